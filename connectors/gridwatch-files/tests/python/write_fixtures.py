"""Writes input files for the gridwatch-files tests with independent writers:
Python's csv and json modules, fastavro and pyarrow. Also writes
expected.json: for each file, the readings a correct reader returns (in
order) and the 0-based record indices that must come back as errors.

Usage: write_fixtures.py OUT_DIR SCHEMA_DIR
"""
import csv
import datetime as dt
import json
import os
import struct
import sys

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

out, schema_dir = sys.argv[1], sys.argv[2]
BASE = 1767225600000  # 2026-01-01T00:00:00Z
STATUSES = ["OK", "DEGRADED", "FAILURE"]


def reading(i):
    return {
        "meter_id": f"m-{i % 37}",
        "timestamp": BASE + i * 1000 + (i % 7),
        "voltage": 230.0 + (i % 100) / 8.0,
        "current": 1.0 + (i % 13) * 0.37,
        "temperature": 15.0 + (i % 21) * 0.5,
        "status": STATUSES[i % 3],
    }


def rfc3339(ms, offset_hours):
    tz = dt.timezone(dt.timedelta(hours=offset_hours))
    t = dt.datetime.fromtimestamp(ms / 1000, tz)
    return t.isoformat(timespec="milliseconds")


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


expected = {}
N = 1000

# --- CSV: extra column, columns reordered, RFC 3339 and epoch ms mixed, bad rows.
rows, errors = [], []
with open(os.path.join(out, "readings.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["status", "meter_id", "timestamp", "voltage", "current", "temperature", "note"])
    record = 0
    for i in range(N):
        r = reading(i)
        ts = r["timestamp"] if i % 2 else rfc3339(r["timestamp"], (i % 5) - 2)
        w.writerow([r["status"], r["meter_id"], ts, repr(r["voltage"]), repr(r["current"]),
                    repr(r["temperature"]), "a, quoted \"note\""])
        rows.append(r)
        record += 1
        if i % 250 == 100:
            w.writerow(["OK", "bad-volt", BASE, "high", "1", "1", ""])
            errors.append(record); record += 1
            w.writerow(["OK", "bad-ts", "yesterday", "1", "1", "1", ""])
            errors.append(record); record += 1
            w.writerow(["WEIRD", "bad-status", BASE, "1", "1", "1", ""])
            errors.append(record); record += 1
expected["readings.csv"] = {"readings": rows, "errors": errors}

# --- NDJSON: json.dumps, RFC 3339 strings, a status-less line, blank lines, bad lines.
rows, errors = [], []
with open(os.path.join(out, "readings.ndjson"), "w") as f:
    record = 0
    for i in range(N):
        r = dict(reading(i))
        line = dict(r)
        if i % 3 == 1:
            line["timestamp"] = rfc3339(r["timestamp"], 1)
        if r["status"] == "OK" and i % 2:
            del line["status"]
        f.write(json.dumps(line) + "\n")
        rows.append(r)
        record += 1
        if i % 400 == 7:
            f.write("\n")
            f.write("{not json\n")
            errors.append(record); record += 1
            f.write(json.dumps({"meter_id": "x", "timestamp": BASE}) + "\n")
            errors.append(record); record += 1
expected["readings.ndjson"] = {"readings": rows, "errors": errors}


def load(name):
    with open(os.path.join(schema_dir, name)) as s:
        return fastavro.parse_schema(json.load(s))


# --- Avro container: SensorReading (deflate), ScoredReading, AnomalyEvent.
rows = [reading(i) for i in range(N)]
with open(os.path.join(out, "readings.avro"), "wb") as f:
    fastavro.writer(f, load("SensorReading.avsc"), rows, codec="deflate", sync_interval=4000)
expected["readings.avro"] = {"readings": rows, "errors": []}

scored = []
for i in range(200):
    r = reading(i)
    scored.append({
        "reading": r,
        "source_offset": i,
        "disposition": "SCORED",
        "scores": [{"field": "voltage", "value": r["voltage"], "window_count": 3,
                    "window_mean": 230.0, "window_stddev": 1.0, "zscore": 0.5,
                    "anomalous": False}],
        "anomalies": [],
    })
with open(os.path.join(out, "scored.avro"), "wb") as f:
    fastavro.writer(f, load("ScoredReading.avsc"), scored, codec="null")
expected["scored.avro"] = {"readings": [s["reading"] for s in scored], "errors": []}

anomalies = []
for i in range(50):
    r = reading(i * 3)
    anomalies.append({
        "anomaly_id": f"a-{i}", "anomaly_type": "VOLTAGE_SURGE", "severity": "WARNING",
        "detected_at": BASE + 10, "original_event": r, "field": "voltage", "zscore": 4.2,
        "window_mean": 230.0, "window_stddev": 1.0, "window_count": 30, "threshold": 3.0,
        "window_ms": 60000,
    })
with open(os.path.join(out, "anomalies.avro"), "wb") as f:
    fastavro.writer(f, load("AnomalyEvent.avsc"), anomalies, codec="deflate")
expected["anomalies.avro"] = {"readings": [a["original_event"] for a in anomalies], "errors": []}

# --- Parquet 1: epoch-ms int64 `timestamp`, float64, plain strings, snappy,
# small row groups, and rows with nulls that must become errors.
rows, errors, cols = [], [], {k: [] for k in reading(0)}
for i in range(N):
    r = reading(i)
    bad = i % 300 == 150
    for k, v in r.items():
        cols[k].append(None if bad and k == ("voltage" if i % 600 else "meter_id") else v)
    if bad:
        errors.append(i)
    else:
        rows.append(r)
table = pa.table({
    "meter_id": pa.array(cols["meter_id"], pa.string()),
    "timestamp": pa.array(cols["timestamp"], pa.int64()),
    "voltage": pa.array(cols["voltage"], pa.float64()),
    "current": pa.array(cols["current"], pa.float64()),
    "temperature": pa.array(cols["temperature"], pa.float64()),
    "status": pa.array(cols["status"], pa.string()),
})
pq.write_table(table, os.path.join(out, "readings.parquet"), compression="snappy",
               row_group_size=128)
expected["readings.parquet"] = {"readings": rows, "errors": errors}

# --- Parquet 2: shaped like the lake's readings/ files: provenance and score
# columns first, `event_time` as timestamp(ms, UTC), zstd, dictionary status;
# plus float32 temperature and a microsecond `appended_at` to ignore.
rows = []
for i in range(N):
    r = reading(i)
    r["temperature"] = f32(r["temperature"])
    rows.append(r)
n = len(rows)
lake = pa.table({
    "source_topic": pa.array(["scored"] * n),
    "source_partition": pa.array([0] * n, pa.int32()),
    "source_offset": pa.array(list(range(n)), pa.int64()),
    "appended_at": pa.array([BASE * 1000] * n, pa.timestamp("us", tz="UTC")),
    "meter_id": pa.array([r["meter_id"] for r in rows]),
    "event_time": pa.array([r["timestamp"] for r in rows], pa.timestamp("ms", tz="UTC")),
    "voltage": pa.array([r["voltage"] for r in rows], pa.float64()),
    "current": pa.array([r["current"] for r in rows], pa.float64()),
    "temperature": pa.array([r["temperature"] for r in rows], pa.float32()),
    "status": pa.array([r["status"] for r in rows]).dictionary_encode(),
    "disposition": pa.array(["SCORED"] * n),
    "voltage_zscore": pa.array([0.1] * n, pa.float64()),
})
pq.write_table(lake, os.path.join(out, "lake-like.parquet"), compression="zstd",
               row_group_size=300)
expected["lake-like.parquet"] = {"readings": rows, "errors": []}

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
