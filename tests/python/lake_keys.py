#!/usr/bin/env python3
"""Every row's identity in the Gridwatch Parquet lake, read with pyarrow
(an independent Parquet implementation), for the crash and outage tests
(tests/tests/crash_sinks.rs, tests/tests/sink_outage.rs).

    lake_keys.py ROOT [--endpoint URL --access-key K --secret-key S]

ROOT is a local directory or s3://bucket/prefix (path-style, region
us-east-1). Prints one JSON object:

    {"readings": [[meter_id, event_time_ms], ...],
     "anomalies": [[meter_id, event_time_ms, anomaly_type], ...],
     "files": N}

one entry per row, duplicates included, so the caller can tell missing from
doubled.
"""
import argparse
import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


def filesystem(args):
    if not args.root.startswith("s3://"):
        return pafs.LocalFileSystem(), args.root.rstrip("/")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = args.endpoint or ""
    scheme = "http" if endpoint.startswith("http://") else "https"
    fs = pafs.S3FileSystem(
        access_key=args.access_key,
        secret_key=args.secret_key,
        endpoint_override=endpoint.split("://", 1)[-1],
        scheme=scheme,
        region="us-east-1",
        force_virtual_addressing=False,
        allow_bucket_creation=False,
    )
    return fs, args.root[len("s3://"):].rstrip("/")


def files_of(fs, base):
    info = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return [i.path for i in info if i.type == pafs.FileType.File and i.path.endswith(".parquet")]


def table(fs, files, columns):
    if not files:
        return None
    return ds.dataset(files, format="parquet", filesystem=fs).to_table(columns=columns)


def millis(column):
    return pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64()).to_pylist()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--endpoint")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    args = parser.parse_args()
    fs, root = filesystem(args)
    out = {"readings": [], "anomalies": [], "files": 0}
    readings = files_of(fs, f"{root}/readings")
    anomalies = files_of(fs, f"{root}/anomalies")
    out["files"] = len(readings) + len(anomalies)
    t = table(fs, readings, ["meter_id", "event_time"])
    if t is not None:
        out["readings"] = [list(r) for r in zip(t["meter_id"].to_pylist(), millis(t["event_time"]))]
    t = table(fs, anomalies, ["meter_id", "event_time", "anomaly_type"])
    if t is not None:
        out["anomalies"] = [
            list(r)
            for r in zip(t["meter_id"].to_pylist(), millis(t["event_time"]), t["anomaly_type"].to_pylist())
        ]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
