#!/usr/bin/env python3
"""Writes the bad-input corpus and its manifest (manifest.json).

Run it from anywhere; it writes next to itself. Standard library only: the
Avro cases are encoded by hand (zig-zag varints, little-endian doubles), so
they can be as broken as we like. tests/tests/bad_input.rs sends each case to
a running `gridwatch run` and checks the dead letter it gets back.

Manifest fields, per case:
  file        the case's bytes
  transport   "ndjson"     POST /api/v1/readings, application/x-ndjson; the
                           test puts a valid reading on the line before and after
              "json-array" POST /api/v1/readings, application/json; with
                           "wrap": true the file is one element and the test
                           puts it in an array between two valid readings
              "topic"      framed/raw bytes a producer wrote to the `readings`
                           topic (the HTTP API takes only JSON today)
  frame       "registered": bytes 1..5 are a placeholder the test replaces
              with the contentId the registry gave SensorReading
  expand      {"token", "byte", "times"}: the token in the file is replaced by
              the byte repeated, so multi-MB cases stay small in git
  expect      {"reason", "stage"} of the dead letter, or null for "no dead
              letter, nothing accepted" (e.g. an empty body)
  about       what the case is
"""
import json
import math
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_string(s):
    if isinstance(s, str):
        s = s.encode()
    return zigzag(len(s)) + s


def avro_double(x):
    return struct.pack("<d", x)


def reading(meter, ts=TS, v=230.0, c=5.0, t=21.0, status=0):
    return (
        avro_string(meter)
        + zigzag(ts)
        + avro_double(v)
        + avro_double(c)
        + avro_double(t)
        + zigzag(status)
    )


# Apicurio v3 framing with a placeholder contentId the test replaces.
REGISTERED = b"\x00\x00\x00\x00\x00"


def line(**fields):
    return json.dumps(fields, separators=(",", ":")).encode()


def good(meter, **over):
    f = {"meter_id": meter, "timestamp": TS, "voltage": 230.1, "current": 5.0,
         "temperature": 21.0}
    f.update(over)
    return line(**f)


cases = []


def case(file, data, transport, expect, about, **extra):
    with open(os.path.join(HERE, file), "wb") as fh:
        fh.write(data)
    entry = {"file": file, "transport": transport}
    entry.update(extra)
    entry["expect"] = (
        None if expect is None else {"reason": expect[0], "stage": expect[1]}
    )
    entry["about"] = about
    cases.append(entry)


UNP, MISMATCH, UNKNOWN = "UNPARSEABLE", "SCHEMA_MISMATCH", "UNKNOWN_SCHEMA"
NOT_FINITE, RANGE, TSR, METER = (
    "NOT_FINITE", "OUT_OF_RANGE", "TIMESTAMP_OUT_OF_RANGE", "INVALID_METER_ID")

# --- JSON over HTTP (NDJSON) -------------------------------------------------
case("json-not-json.ndjson", b"{not json", "ndjson", (UNP, "ingest"),
     "opens an object, then is not JSON")
case("json-truncated.ndjson", b'{"meter_id":"bad-truncated","timestamp":17672',
     "ndjson", (UNP, "ingest"), "a reading cut off mid-number")
case("json-binary-garbage.ndjson", bytes(range(0x80, 0x100)) + b"\x00\x01\x02",
     "ndjson", (UNP, "ingest"), "high bytes and NULs, no JSON at all")
case("json-invalid-utf8-in-string.ndjson",
     b'{"meter_id":"bad-\xff\xfe-utf8","timestamp":1767225600000,"voltage":230,'
     b'"current":5,"temperature":21}',
     "ndjson", (UNP, "ingest"), "invalid UTF-8 inside the meter_id string")
case("json-invalid-utf8-lone-surrogate.ndjson",
     good("bad-\\ud800-surrogate").replace(b"\\\\", b"\\"),
     "ndjson", (UNP, "ingest"), "an escaped lone UTF-16 surrogate, not a character")
case("json-wrong-type-voltage.ndjson", good("bad-voltage-text", voltage="high"),
     "ndjson", (MISMATCH, "ingest"), "voltage is a string")
case("json-wrong-type-meter-id.ndjson", good(42), "ndjson", (MISMATCH, "ingest"),
     "meter_id is a number")
case("json-wrong-type-bool-current.ndjson", good("bad-current-bool", current=True),
     "ndjson", (MISMATCH, "ingest"), "current is a boolean")
case("json-null-temperature.ndjson", good("bad-null-temp", temperature=None),
     "ndjson", (MISMATCH, "ingest"), "temperature is null")
case("json-missing-field.ndjson",
     line(meter_id="bad-missing", timestamp=TS, current=5.0, temperature=21.0),
     "ndjson", (MISMATCH, "ingest"), "no voltage")
case("json-bad-status.ndjson", good("bad-status", status="on fire"), "ndjson",
     (MISMATCH, "ingest"), "status is not OK, DEGRADED or FAILURE")
case("json-top-level-array.ndjson", b"[1,2,3]", "ndjson", (MISMATCH, "ingest"),
     "an array where a reading object belongs")
case("json-nested-meter-id.ndjson",
     good("x").replace(b'"x"', b'{"a":{"b":[1,2,{"c":null}]}}'), "ndjson",
     (MISMATCH, "ingest"), "meter_id is a nested object")
case("json-nested-garbage-deep.ndjson",
     good("bad-deep").replace(b"230.1", b"[" * 5000 + b"]" * 5000), "ndjson",
     (MISMATCH, "ingest"),
     "voltage is an array nested 5,000 deep (an unknown field nested as deep is "
     "skipped without recursion and the reading accepted, as unknown fields are)")
case("json-number-overflow.ndjson",
     good("bad-overflow").replace(b"230.1", b"1e999"), "ndjson", (UNP, "ingest"),
     "voltage 1e999, beyond f64 (JSON has no NaN or infinity)")
case("json-nan-literal.ndjson", good("bad-nan").replace(b"230.1", b"NaN"),
     "ndjson", (UNP, "ingest"), "a NaN literal, which JSON does not have")
case("json-timestamp-text.ndjson", good("bad-ts-text", timestamp="yesterday"),
     "ndjson", (TSR, "ingest"), "timestamp neither epoch ms nor RFC 3339")
case("json-timestamp-float-huge.ndjson",
     good("bad-ts-huge").replace(b"1767225600000", b"1e30"), "ndjson",
     (MISMATCH, "ingest"), "timestamp beyond i64 milliseconds")
case("json-timestamp-far-future.ndjson", good("bad-ts-future", timestamp=32_503_680_000_000),
     "ndjson", (TSR, "validate"), "year 3000 in epoch ms")
case("json-timestamp-far-future-rfc3339.ndjson",
     good("bad-ts-future-text", timestamp="9999-12-31T23:59:59Z"), "ndjson",
     (TSR, "validate"), "year 9999 as RFC 3339")
case("json-timestamp-far-past.ndjson", good("bad-ts-past", timestamp=-62_135_596_800_000),
     "ndjson", (TSR, "validate"), "year 1 in epoch ms")
case("json-timestamp-i64-min.ndjson", good("bad-ts-i64-min", timestamp=-(1 << 63)),
     "ndjson", (TSR, "validate"),
     "timestamp i64::MIN: crashed ingest's dedup (overflow) before the fix")
case("json-timestamp-epoch-zero.ndjson", good("bad-ts-zero", timestamp=0), "ndjson",
     (TSR, "validate"), "1970-01-01, before the earliest accepted time")
case("json-meter-id-too-long.ndjson", good("bad-" + "x" * 200), "ndjson",
     (METER, "validate"), "meter_id of 204 bytes, over the 128-byte limit")
case("json-meter-id-multi-mb.ndjson", good("bad-huge-@@PAD@@"), "ndjson",
     (METER, "validate"), "a 3 MB meter_id",
     expand={"token": "@@PAD@@", "byte": "m", "times": 3_000_000})
case("json-meter-id-empty.ndjson", good(""), "ndjson", (METER, "validate"),
     "an empty meter_id")
case("json-meter-id-blank.ndjson", good("   "), "ndjson", (METER, "validate"),
     "a meter_id of spaces")
case("json-meter-id-control-chars.ndjson", good("bad-\u0000-\u001b[31m"), "ndjson",
     (METER, "validate"), "NUL and an ANSI escape in meter_id")
case("json-voltage-out-of-range.ndjson", good("bad-voltage-1e6", voltage=1e6),
     "ndjson", (RANGE, "validate"), "one megavolt")
case("json-temperature-out-of-range.ndjson",
     good("bad-temp-cold", temperature=-273.15), "ndjson", (RANGE, "validate"),
     "absolute zero, below -60 °C")
case("json-empty-body.ndjson", b"", "ndjson", None,
     "an empty body: nothing accepted, nothing dead-lettered")
case("json-blank-lines.ndjson", b"\n \r\n\t\n", "ndjson", None,
     "only blank lines: nothing accepted, nothing dead-lettered")

# --- JSON over HTTP (array) --------------------------------------------------
case("array-element-wrong-type.json", good("bad-array-elem", voltage=[1, 2]),
     "json-array", (MISMATCH, "ingest"), "an array element whose voltage is an array",
     wrap=True)
case("array-element-number.json", b"12345", "json-array", (MISMATCH, "ingest"),
     "a bare number among the readings", wrap=True)
case("array-element-out-of-range.json", good("bad-array-current", current=-5000.0),
     "json-array", (RANGE, "validate"), "current -5000 A", wrap=True)
case("array-not-an-array.json", good("bad-not-array"), "json-array", (UNP, "ingest"),
     "application/json must be an array; one object is refused whole")
case("array-truncated.json", b'[' + good("bad-array-cut") + b',{"meter_id":"x"',
     "json-array", (UNP, "ingest"), "an array cut off mid-element")
case("array-empty-body.json", b"", "json-array", (UNP, "ingest"),
     "an empty application/json body is not an array")

# --- Avro a producer wrote to the readings topic ----------------------------
case("avro-truncated.bin", REGISTERED + reading("bad-avro-truncated")[:-9], "topic",
     (MISMATCH, "validate"), "a datum cut inside the temperature double",
     frame="registered")
case("avro-header-only.bin", REGISTERED, "topic", (MISMATCH, "validate"),
     "a valid header and no datum", frame="registered")
case("avro-frame-truncated.bin", b"\x00\x00\x01", "topic", (UNP, "validate"),
     "the magic byte and half a schema id")
case("avro-wrong-magic.bin", b"\x01" + REGISTERED[1:] + reading("bad-avro-magic"),
     "topic", (UNP, "validate"), "magic byte 0x01 instead of 0x00", frame="registered")
case("avro-unknown-schema-id.bin",
     b"\x00\x7f\xff\xff\xf0" + reading("bad-avro-unknown-id"), "topic",
     (UNKNOWN, "validate"), "contentId 2147483632, which the registry never issued")
case("avro-nan-voltage.bin", REGISTERED + reading("bad-avro-nan", v=math.nan), "topic",
     (NOT_FINITE, "validate"), "voltage NaN", frame="registered")
case("avro-inf-current.bin", REGISTERED + reading("bad-avro-inf", c=math.inf), "topic",
     (NOT_FINITE, "validate"), "current +inf", frame="registered")
case("avro-neg-inf-temperature.bin",
     REGISTERED + reading("bad-avro-neg-inf", t=-math.inf), "topic",
     (NOT_FINITE, "validate"), "temperature -inf", frame="registered")
case("avro-invalid-utf8-meter-id.bin",
     REGISTERED + reading(b"bad-\xc3\x28-\xff"), "topic", (MISMATCH, "validate"),
     "meter_id bytes that are not UTF-8", frame="registered")
case("avro-string-length-huge.bin",
     REGISTERED + zigzag(1 << 61) + b"bad-huge-len", "topic", (MISMATCH, "validate"),
     "a meter_id length of 2^61 bytes: must fail, not allocate", frame="registered")
case("avro-string-length-negative.bin",
     REGISTERED + zigzag(-5) + reading("bad-neg-len")[1:], "topic",
     (MISMATCH, "validate"), "a negative string length", frame="registered")
case("avro-varint-overlong.bin",
     REGISTERED + avro_string("bad-overlong") + b"\xff" * 11 + b"\x01", "topic",
     (MISMATCH, "validate"), "a timestamp varint of 12 bytes (max is 10)",
     frame="registered")
case("avro-bad-enum-index.bin",
     REGISTERED + reading("bad-avro-enum")[:-1] + zigzag(7), "topic",
     (MISMATCH, "validate"), "status symbol index 7 of 3", frame="registered")
case("avro-timestamp-max.bin",
     REGISTERED + reading("bad-avro-ts-max", ts=(1 << 63) - 1), "topic",
     (TSR, "validate"), "timestamp i64::MAX", frame="registered")
case("avro-timestamp-min.bin",
     REGISTERED + reading("bad-avro-ts-min", ts=-(1 << 63)), "topic",
     (TSR, "validate"), "timestamp i64::MIN", frame="registered")
case("avro-meter-id-too-long.bin", REGISTERED + reading("bad-avro-" + "y" * 300),
     "topic", (METER, "validate"), "meter_id of 309 bytes", frame="registered")
case("avro-meter-id-multi-mb.bin",
     REGISTERED + zigzag(len("bad-avro-huge-") + 2_000_000) + b"bad-avro-huge-@@PAD@@"
     + reading("x")[2:], "topic", (METER, "validate"),
     "a 2 MB meter_id (the length prefix counts the expanded string)",
     frame="registered", expand={"token": "@@PAD@@", "byte": "a", "times": 2_000_000})
case("avro-empty-record.bin", b"", "topic", (UNP, "validate"), "a zero-length record")
case("avro-text-garbage.bin", b"hello, grid", "topic", (UNP, "validate"),
     "text that is neither framed Avro nor a JSON object")
case("avro-json-nan-in-topic.bin",
     good("bad-raw-json-nan").replace(b"230.1", b"NaN"), "topic", (UNP, "validate"),
     "JSON written straight to the topic with a NaN literal")

with open(os.path.join(HERE, "manifest.json"), "w") as fh:
    json.dump({"cases": cases}, fh, indent=1)
    fh.write("\n")
print(f"{len(cases)} cases")
