#!/usr/bin/env python3
"""The one table scripts/bench ends with: criterion ratios, Gridwatch's
figures against the issue's targets, and the peer baseline as ratios.

    summary.py REPORT_DIR SINCE_EPOCH_SECONDS
"""

import json
import os
import subprocess
import sys


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out, since = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    crit_root = os.path.join(os.path.dirname(out), "criterion")
    print("criterion (this run)")
    subprocess.run([sys.executable, os.path.join(here, "criterion_table.py"), crit_root, since], check=False)
    print()

    wasm, e2e, e50 = read(f"{out}/wasm.json"), read(f"{out}/e2e.json"), read(f"{out}/e2e-50k.json")
    state = read(f"{out}/state.json")
    dump = read(f"{out}/dump.json")
    bw, plain = read(f"{out}/peer-bytewax.json"), read(f"{out}/peer-plain.json")

    rows = [("figure", "measured", "target", "verdict")]

    def verdict(ok):
        return "met" if ok else "MISSED"

    if wasm:
        w, n = wasm["events_per_sec"], wasm["native_events_per_sec"]
        rows.append(("validate+detect WASM, 1 core", f"{w:,.0f} events/s", ">= 1,000,000", verdict(w >= 1e6)))
        rows.append(("  of native", f"{w / n * 100:.0f}% (native {n:,.0f}/s; host alone {wasm['host_events_per_sec']:,.0f}/s)", ">= 60%", verdict(w / n >= 0.6)))
    if e2e:
        rows.append(("end to end, flat out", f"{e2e['events_per_sec']:,.0f} events/s ({e2e['cpu_ns_per_event']:,.0f} ns CPU/event, {e2e['cpu_cores']:.2f} cores)", ">= 200,000", verdict(e2e["events_per_sec"] >= 2e5)))
        rows.append(("  peak RSS", f"{e2e['peak_rss_bytes'] / 2**20:,.0f} MiB", "", ""))
    if e50:
        lat = e50["latency_ms"]
        rows.append(("p99 ingest->detect at 50k/s", f"{lat['p99']:.1f} ms (p50 {lat['p50']:.1f}, p999 {lat['p999']:.1f}; achieved {e50['events_per_sec']:,.0f}/s)", "<= 10 ms", verdict(lat["p99"] <= 10 and e50["events_per_sec"] >= 45000)))
    if state:
        rows.append(("100k meters x 5-min windows", f"{state['peak_rss_bytes'] / 2**20:,.0f} MiB peak RSS ({state.get('detector_meters')} meters held)", "<= 512 MB", verdict(state["peak_rss_bytes"] <= 512e6)))
    else:
        rows.append(("100k meters x 5-min windows", "not run (BENCH_STATE=1)", "<= 512 MB", ""))
    if bw and dump:
        same = bw["zscore_anomalies"] == dump["zscore_anomalies"]
        check = "same anomalies" if same else f"DIFFERENT anomalies: peer {bw['zscore_anomalies']}, gridwatch {dump['zscore_anomalies']}"
        rows.append((f"peer: Bytewax {bw['version']} (1 worker)", f"{bw['events_per_sec']:,.0f} events/s ({check})", "", ""))
        if wasm:
            rows.append(("  Gridwatch WASM chain / Bytewax", f"{wasm['events_per_sec'] / bw['events_per_sec']:.1f}x", "", ""))
        if e2e:
            rows.append(("  Gridwatch end to end / Bytewax", f"{e2e['events_per_sec'] / bw['events_per_sec']:.1f}x", "", ""))
    if plain:
        rows.append((f"peer: plain Python {plain['version']}", f"{plain['events_per_sec']:,.0f} events/s", "", ""))
    try:
        with open(f"{out}/fluvio.txt") as f:
            rows.append(("peer: fluvio consume", f.read().strip(), "", ""))
    except OSError:
        pass
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths[1] = min(widths[1], 90)
    print("Gridwatch vs targets and peers")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("-" * (sum(widths) + 6))


if __name__ == "__main__":
    main()
