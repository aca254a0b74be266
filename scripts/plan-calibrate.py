#!/usr/bin/env python3
"""Calibrates and validates the `stele plan` memory model against `stele bench` reports.

Usage: scripts/plan-calibrate.py STELE calibrate|validate BLOCKS_DIR:REPORT.json ...

calibrate: solves base RSS, RSS per request and held bytes per series (least squares) so the
plan's predicted memory of one store equals the measured peak RSS of each given run; prints
the flags. validate: prints predicted vs measured for each run with the built-in constants
(or CAL="--base-rss .. --held-bytes-per-series .. --rss-per-request .." from the env).
See docs/PLANNING.md.
"""
import json
import os
import subprocess
import sys


def plan(stele, blocks, report, extra):
    out = subprocess.run(
        [stele, "plan", "--no-progress", "--output", "json", "--blocks-dir", blocks,
         "--bench-report", report, "--pods", "1", "--cache-hit-target", "100%"] + extra,
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    stele, mode, runs = sys.argv[1], sys.argv[2], [a.split(":") for a in sys.argv[3:]]
    if mode == "calibrate":
        zero = ["--base-rss", "0", "--rss-per-request", "0"]
        knobs = ["--held-bytes-per-series"]
        rows, ys = [], []
        for blocks, report in runs:
            off = [a for k in knobs for a in (k, "0")]
            r0 = plan(stele, blocks, report, zero + off)
            x0 = r0["plan"]["memory"]["total"]
            row = [1.0, r0["plan"]["concurrency"]]
            for k in knobs:
                on = [a for o in knobs for a in (o, "1000" if o == k else "0")]
                x1 = plan(stele, blocks, report, zero + on)["plan"]["memory"]["total"]
                row.append((x1 - x0) / 1000.0)
            rows.append(row)
            ys.append(r0["bench"]["peak_rss_bytes"] - x0)
        n = len(rows[0])
        # Least squares through the normal equations, solved by Gaussian elimination.
        a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
        b = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(n)]
        for i in range(n):
            for k in range(i + 1, n):
                f = a[k][i] / a[i][i]
                a[k] = [x - f * y for x, y in zip(a[k], a[i])]
                b[k] -= f * b[i]
        sol = [0.0] * n
        for i in reversed(range(n)):
            sol[i] = (b[i] - sum(a[i][j] * sol[j] for j in range(i + 1, n))) / a[i][i]
        base, per_request, per_series = sol
        print(f"--base-rss {round(base)} --rss-per-request {round(per_request)} "
              f"--held-bytes-per-series {per_series:.0f}")
        return
    extra = os.environ.get("CAL", "").split()
    print("| run | blocks | clients | predicted peak RSS | measured peak RSS | error |"
          " predicted header disk |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for blocks, report in runs:
        r = plan(stele, blocks, report, extra)
        p, m = r["plan"]["memory"]["total"], r["bench"]["peak_rss_bytes"]
        mib = lambda v: f"{v / 2**20:.1f} MiB"
        print(f"| {os.path.basename(report)} | {r['inventory']['totals']['blocks']} "
              f"| {r['bench']['concurrency']:.0f} | {mib(p)} | {mib(m)} "
              f"| {(p / m - 1) * 100:+.1f}% | {r['plan']['disk_bytes']} B |")


main()
