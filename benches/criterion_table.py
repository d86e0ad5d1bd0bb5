#!/usr/bin/env python3
"""Prints criterion results written since a time as one table with ratios.

    criterion_table.py TARGET_CRITERION_DIR SINCE_EPOCH_SECONDS [--json OUT]

Reads every <group>/<bench>/[<param>/]new/{benchmark,estimates}.json newer
than SINCE, turns the mean time per iteration into elements/s where the
bench declared a throughput, and adds ratios: in `validate_detect` each way
against `native` (and our host against smartengine) at the same batch size;
elsewhere against the bench whose name contains "baseline", if any.
"""

import json
import os
import sys


def load(root, since):
    rows = []
    for dirpath, _dirs, files in os.walk(root):
        if not dirpath.endswith(os.sep + "new") or "benchmark.json" not in files:
            continue
        bench_file = os.path.join(dirpath, "benchmark.json")
        if os.path.getmtime(bench_file) < since:
            continue
        with open(bench_file) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        ns = e["mean"]["point_estimate"]
        thr = b.get("throughput") or {}
        elements = thr.get("Elements") or thr.get("Bytes")
        unit = "elem/s" if "Elements" in thr else ("B/s" if "Bytes" in thr else "")
        rows.append(
            {
                "group": b.get("group_id"),
                "function": b.get("function_id") or "",
                "param": b.get("value_str") or "",
                "ns_per_iter": ns,
                "per_sec": (elements / (ns * 1e-9)) if elements else None,
                "unit": unit,
            }
        )
    rows.sort(key=lambda r: (r["group"], r["function"], num(r["param"])))
    return rows


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("inf")


def ratios(rows):
    by = {(r["group"], r["function"], r["param"]): r for r in rows}
    for r in rows:
        r["ratio"] = ""
        if not r["per_sec"]:
            continue
        if r["group"] == "validate_detect":
            native = by.get(("validate_detect", "native", r["param"]))
            se = by.get(("validate_detect", "smartengine", r["param"]))
            parts = []
            if native and native["per_sec"] and r["function"] != "native":
                parts.append(f"{r['per_sec'] / native['per_sec'] * 100:.0f}% of native")
            if se and se["per_sec"] and r["function"] == "gridwatch_host":
                parts.append(f"{r['per_sec'] / se['per_sec']:.2f}x smartengine")
            r["ratio"] = ", ".join(parts)
        else:
            base = [
                b
                for b in rows
                if b["group"] == r["group"] and "baseline" in b["function"].lower() and b["per_sec"]
            ]
            if base and base[0] is not r:
                r["ratio"] = f"{r['per_sec'] / base[0]['per_sec']:.2f}x {base[0]['function']}"


def fmt_rate(v, unit):
    if v is None:
        return "-"
    if unit == "B/s":
        return f"{v / 2**20:,.0f} MiB/s"
    return f"{v:,.0f}/s"


def main():
    root, since = sys.argv[1], float(sys.argv[2])
    rows = load(root, since)
    ratios(rows)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(rows, f, indent=1)
    header = ("group", "bench", "param", "time/iter", "throughput", "ratio")
    table = [header] + [
        (
            r["group"],
            r["function"],
            r["param"],
            f"{r['ns_per_iter'] / 1e6:.3f} ms",
            fmt_rate(r["per_sec"], r["unit"]),
            r["ratio"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))


if __name__ == "__main__":
    main()
