#!/usr/bin/env python3
"""The peer baseline: Gridwatch's z-score rule in Bytewax (and in plain Python).

The same detection as smartmodules/gridwatch-detector with its defaults:
per meter, the voltages of the readings in [t - 5 min, t) form the
baseline; once it holds at least 10 readings and its sample standard
deviation is above 1e-9, a reading with |z| > 2.5 is an anomaly (a surge
above, a sag below). Readings with status FAILURE are neither scored nor
added to the baseline; readings more than 5 s older than their meter's
newest are late and skipped.

Input: NDJSON readings as `gridwatch-bench dump` writes them (the JSON edge
format). Output: one JSON line with events, z-score anomalies, seconds and
events/s, so `scripts/bench` can check the peer found the same anomalies as
Gridwatch before comparing speeds.

    zscore_peer.py --engine bytewax readings.ndjson
    zscore_peer.py --engine plain readings.ndjson

Bytewax runs in its testing mode (`run_main`: one worker, in process), which
needs no Kafka broker; the file is read by its `FileSource`.
"""

import argparse
import json
import sys
import time
from collections import deque

WINDOW_MS = 5 * 60 * 1000
THRESHOLD = 2.5
MIN_SAMPLES = 10
MIN_STDDEV = 1e-9
LATENESS_MS = 5000


class MeterWindow:
    """One meter's baseline: the window and its shifted running sums."""

    __slots__ = ("times", "values", "shift", "s1", "s2", "newest")

    def __init__(self):
        self.times = deque()
        self.values = deque()
        self.shift = 0.0
        self.s1 = 0.0
        self.s2 = 0.0
        self.newest = None

    def score(self, ts, status, voltage):
        """Scores one reading, then adds it; returns +1 surge, -1 sag, 0 none."""
        if self.newest is not None and ts < self.newest and self.newest - ts > LATENESS_MS:
            return 0
        if self.newest is None or ts > self.newest:
            self.newest = ts
        if status == "FAILURE":
            return 0
        cutoff = ts - WINDOW_MS
        times, values = self.times, self.values
        while times and times[0] < cutoff:
            times.popleft()
            d = values.popleft() - self.shift
            self.s1 -= d
            self.s2 -= d * d
        n = len(times)
        verdict = 0
        if n >= MIN_SAMPLES:
            mean_d = self.s1 / n
            var = (self.s2 - n * mean_d * mean_d) / (n - 1)
            sd = var ** 0.5 if var > 0 else 0.0
            if sd > MIN_STDDEV:
                z = (voltage - (self.shift + mean_d)) / sd
                if z > THRESHOLD:
                    verdict = 1
                elif z < -THRESHOLD:
                    verdict = -1
        if n == 0:
            self.shift, self.s1, self.s2 = voltage, 0.0, 0.0
        d = voltage - self.shift
        self.s1 += d
        self.s2 += d * d
        times.append(ts)
        values.append(voltage)
        return verdict


def parse(line):
    r = json.loads(line)
    return r["meter_id"], r["timestamp"], r.get("status", "OK"), r["voltage"]


def run_plain(path):
    windows = {}
    events = anomalies = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            meter, ts, status, voltage = parse(line)
            w = windows.get(meter)
            if w is None:
                w = windows[meter] = MeterWindow()
            events += 1
            if w.score(ts, status, voltage):
                anomalies += 1
    return events, anomalies


def run_bytewax(path):
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    counts = {"events": 0}

    def mapper(window, reading):
        if window is None:
            window = MeterWindow()
        _meter, ts, status, voltage = reading
        counts["events"] += 1
        return window, window.score(ts, status, voltage)

    flow = Dataflow("gridwatch_zscore")
    lines = op.input("readings", flow, FileSource(path))
    readings = op.map("parse", op.filter("non_empty", lines, str.strip), parse)
    keyed = op.key_on("by_meter", readings, lambda r: r[0])
    scored = op.stateful_map("zscore", keyed, mapper)
    flagged = op.filter("anomalous", scored, lambda kv: kv[1] != 0)
    found = []
    op.output("anomalies", flagged, TestingSink(found))
    run_main(flow)
    return counts["events"], len(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("--engine", choices=["bytewax", "plain"], default="bytewax")
    args = ap.parse_args()
    started = time.perf_counter()
    if args.engine == "bytewax":
        events, anomalies = run_bytewax(args.input)
        import bytewax

        version = getattr(bytewax, "__version__", None)
        if version is None:
            from importlib.metadata import version as v

            version = v("bytewax")
    else:
        events, anomalies = run_plain(args.input)
        version = sys.version.split()[0]
    took = time.perf_counter() - started
    print(
        json.dumps(
            {
                "engine": args.engine,
                "version": version,
                "events": events,
                "zscore_anomalies": anomalies,
                "seconds": took,
                "events_per_sec": events / took if took > 0 else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
