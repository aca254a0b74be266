#!/usr/bin/env python3
"""Calibrates and validates the `stele plan` memory model against `stele bench` reports.

Usage: scripts/plan-calibrate.py STELE calibrate|validate BLOCKS_DIR:REPORT.json ...

calibrate: solves base RSS, RSS per request, held bytes per series and the concurrent share
(least squares, the share on a grid) so the plan's predicted memory of one store equals the
measured peak RSS of each given run; prints the flags. validate: prints predicted vs
measured for each run with the built-in constants (or CAL="--base-rss .. ..." from the env).
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


def least_squares(rows, ys):
    """Solves rows x = ys in the least-squares sense (normal equations, Gaussian
    elimination)."""
    n = len(rows[0])
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
    return sol


def fit(stele, runs, share):
    """Base RSS, RSS per request and held bytes per series for one concurrent share (the
    model is linear in those three once the share is fixed), and the fit's squared
    relative error summed over the runs."""
    fixed = ["--concurrent-share", str(share)]
    zero = ["--base-rss", "0", "--rss-per-request", "0"]
    rows, ys, measured = [], [], []
    for blocks, report in runs:
        r0 = plan(stele, blocks, report, fixed + zero + ["--held-bytes-per-series", "0"])
        x0 = r0["plan"]["memory"]["total"]
        x1 = plan(stele, blocks, report, fixed + zero + ["--held-bytes-per-series", "1000"])
        rows.append([1.0, r0["plan"]["concurrency"],
                     (x1["plan"]["memory"]["total"] - x0) / 1000.0])
        measured.append(r0["bench"]["peak_rss_bytes"])
        ys.append(measured[-1] - x0)
    sol = least_squares(rows, ys)
    err = sum((sum(c * x for c, x in zip(r, sol)) - y) ** 2 / m ** 2
              for r, y, m in zip(rows, ys, measured))
    return sol, err


def main():
    stele, mode, runs = sys.argv[1], sys.argv[2], [a.split(":") for a in sys.argv[3:]]
    if mode == "calibrate":
        # The share enters the model multiplied by the held bytes, so it is searched on a
        # grid and the three linear constants are solved for each value; constants must
        # not come out negative.
        best = None
        for step in range(21):
            share = step / 20
            (base, per_request, per_series), err = fit(stele, runs, share)
            if min(base, per_request, per_series) < 0:
                continue
            if best is None or err < best[0]:
                best = (err, share, base, per_request, per_series)
        if best is None:
            sys.exit("no concurrent share in 0..1 gives non-negative constants")
        _, share, base, per_request, per_series = best
        print(f"--base-rss {round(base)} --rss-per-request {round(per_request)} "
              f"--held-bytes-per-series {per_series:.0f} --concurrent-share {share:.2f}")
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
