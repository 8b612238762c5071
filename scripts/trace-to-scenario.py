#!/usr/bin/env python3
"""Turns a real demand trace into an NVML stand-in scenario whose GPU load follows it.

Usage: trace-to-scenario.py TRACE.csv OUT.json [--gpus 4] [--speedup 6] [--bucket 10]

TRACE is either the Azure LLM per-request format (TIMESTAMP,ContextTokens,GeneratedTokens:
requests are counted per bucket) or NAB's timestamp,value. Demand is scaled so the busiest
bucket is 95 % utilization; `--speedup` compresses time so a demo shows the shape in minutes.
Each GPU gets the same curve shifted a little, memory and power follow utilization.
"""
import argparse
import csv
import json
import sys
from datetime import datetime


def parse_time(text):
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text[:26], fmt).timestamp()
        except ValueError:
            pass
    raise ValueError(f"unrecognised timestamp {text!r}")


def load(path, bucket):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    if header[:1] == ["timestamp"] and "contexttokens" in header:
        times = [parse_time(r[0]) for r in body if r]
        start = min(times)
        counts = {}
        for t in times:
            counts[int((t - start) // bucket)] = counts.get(int((t - start) // bucket), 0) + 1
        n = max(counts) + 1
        return [(i * bucket, float(counts.get(i, 0))) for i in range(n)]
    if header[:2] == ["timestamp", "value"]:
        pts = [(parse_time(r[0]), float(r[1])) for r in body if len(r) >= 2]
        start = pts[0][0]
        return [(t - start, v) for t, v in pts]
    sys.exit(f"{path}: expected a header 'TIMESTAMP,ContextTokens,GeneratedTokens' or 'timestamp,value'")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--speedup", type=float, default=6.0)
    ap.add_argument("--bucket", type=float, default=10.0)
    ap.add_argument("--max-points", type=int, default=720)
    args = ap.parse_args()
    series = load(args.trace, args.bucket)
    if len(series) > args.max_points:
        step = len(series) / args.max_points
        series = [series[int(i * step)] for i in range(args.max_points)]
    peak = max(v for _, v in series) or 1.0
    span = series[-1][0] / args.speedup + args.bucket / args.speedup
    gpus = []
    for g in range(args.gpus):
        shift = g * 0.07
        util = []
        for t, v in series:
            u = min(100.0, max(0.0, 95.0 * (v / peak) * (1.0 - shift) + 2.0))
            util.append([round(t / args.speedup, 3), round(u, 1)])
        mem = [[t, round(8e9 + 60e9 * u / 100.0)] for t, u in util]
        power = [[t, round(70 + 600 * u / 100.0, 1)] for t, u in util]
        gpus.append({
            "uuid": f"GPU-d3m0{g:04d}-0000-4000-8000-{g:012d}",
            "name": "NVIDIA H100 80GB HBM3",
            "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0",
            "minor_number": g,
            "memory_total_bytes": 85899345920,
            "utilization_gpu_percent": {"points": util, "repeat_seconds": span},
            "utilization_memory_percent": {"points": [[t, round(u * 0.6, 1)] for t, u in util], "repeat_seconds": span},
            "memory_used_bytes": {"points": mem, "repeat_seconds": span},
            "power_usage_watts": {"points": power, "repeat_seconds": span},
            "power_limit_watts": 700,
            "temperature_celsius": {"points": [[t, round(35 + 40 * u / 100.0)] for t, u in util], "repeat_seconds": span},
            "sm_clock_mhz": 1980,
            "memory_clock_mhz": 2619,
        })
    json.dump({"driver_version": "550.54.15", "cuda_driver_version": 12040, "gpus": gpus}, open(args.out, "w"))
    print(f"{args.trace}: {len(series)} points, {span:.0f} s per loop at {args.speedup}x", file=sys.stderr)


if __name__ == "__main__":
    main()
