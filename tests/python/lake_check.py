#!/usr/bin/env python3
"""Independent reader of the Gridwatch Parquet lake (pyarrow, Arrow C++).

Used by connectors/gridwatch-lake/tests: the lake sink writes with the Rust
`parquet` crate, this reads back with a different implementation and checks
what a data scientist relies on.

    lake_check.py summary ROOT [S3 options]
        JSON: per dataset, rows, distinct (topic, partition, offset)
        identities, duplicated identities, rows whose date/hour folder does
        not match their UTC event time, files, and rows per topic partition.
    lake_check.py offsets ROOT DATASET PARTITION [S3 options]
        JSON list of source_offset values (one per row) of that partition.

ROOT is a local directory or s3://bucket/prefix; for S3 pass --endpoint,
--access-key and --secret-key (path-style, region us-east-1).
"""
import argparse
import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000


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


def load(fs, root, dataset):
    """The dataset as one table with its hive folder values, or None."""
    base = f"{root}/{dataset}"
    info = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    files = [i.path for i in info if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
    if not files:
        return None, 0
    keys = [("date", pa.string())] + ([("hour", pa.string())] if dataset == "readings" else [])
    partitioning = ds.partitioning(pa.schema(keys), flavor="hive")
    data = ds.dataset(files, format="parquet", filesystem=fs, partitioning=partitioning,
                      partition_base_dir=base)
    return data.to_table(), len(files)


def summary(fs, root, dataset):
    table, files = load(fs, root, dataset)
    if table is None:
        return {"rows": 0, "distinct": 0, "duplicated": 0, "bad_partition": 0, "files": 0,
                "per_partition": {}}
    ms = pc.cast(pc.cast(table["event_time"], pa.timestamp("ms")), pa.int64())
    days = pc.floor(pc.divide(pc.cast(ms, pa.float64()), float(MS_PER_DAY)))
    dates = pc.cast(pc.cast(pc.cast(days, pa.int32()), pa.date32()), pa.string())
    bad = pc.invert(pc.equal(dates, table["date"]))
    if dataset == "readings":
        hours = pc.divide(pc.subtract(ms, pc.multiply(pc.cast(days, pa.int64()), MS_PER_DAY)),
                          MS_PER_HOUR)
        want = pc.utf8_lpad(pc.cast(hours, pa.string()), 2, "0")
        bad = pc.or_(bad, pc.invert(pc.equal(want, table["hour"])))
    identity = ["source_topic", "source_partition", "source_offset"]
    distinct = table.select(identity).group_by(identity).aggregate([]).num_rows
    per_partition = table.group_by("source_partition").aggregate([("source_offset", "count")])
    return {
        "rows": table.num_rows,
        "distinct": distinct,
        "duplicated": table.num_rows - distinct,
        "bad_partition": pc.sum(pc.cast(bad, pa.int64())).as_py() or 0,
        "files": files,
        "per_partition": {
            str(p): n for p, n in zip(per_partition["source_partition"].to_pylist(),
                                      per_partition["source_offset_count"].to_pylist())
        },
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["summary", "offsets"])
    parser.add_argument("root")
    parser.add_argument("dataset", nargs="?")
    parser.add_argument("partition", nargs="?", type=int)
    parser.add_argument("--endpoint")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    args = parser.parse_args()
    fs, root = filesystem(args)
    if args.command == "summary":
        out = {d: summary(fs, root, d) for d in ("readings", "anomalies")}
    else:
        table, _ = load(fs, root, args.dataset)
        if table is None:
            out = []
        else:
            mask = pc.equal(table["source_partition"], args.partition)
            out = table.filter(mask)["source_offset"].to_pylist()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
