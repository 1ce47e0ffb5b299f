#!/usr/bin/env python3
"""Joins gpu_kernel_bench and sdpa_peer results into the table of docs/results/gpu_kernels.md.

    python3 tools/gpu_kernel_report.py RESULTS/kernels.json RESULTS/sdpa.json > table.md
    python3 tools/gpu_kernel_report.py --kernels K1.json K2.json K3.json --peer S1.json S2.json

Each kernel's rate is shown against its ceiling (copy bandwidth or cuBLAS GEMM rate, measured in
the same run) and, for attention, against PyTorch's scaled_dot_product_attention on the same
shapes and card (peer time / our time: above 1 means faster than PyTorch). With several runs
(repeated commands on the same machine), each time is the median over the runs, shown with the
runs' range; rates and ceilings are the runs' medians too.
"""
import argparse
import json
import statistics


def key(row):
    return (row["kernel"], row["shape"], row["dtype"])


def merge(runs):
    """Rows of the first run, each with the median time over the runs and the range."""
    by_key = [{key(r): r for r in run} for run in runs]
    merged = []
    for first in runs[0]:
        rows = [run[key(first)] for run in by_key if key(first) in run]
        ms = statistics.median(r["ms"] for r in rows)
        row = dict(first)
        row["ms"] = ms
        row["ms_min"] = min(r["ms"] for r in rows)
        row["ms_max"] = max(r["ms"] for r in rows)
        row["value"] = statistics.median(r["value"] * r["ms"] for r in rows) / ms
        row["ceiling"] = statistics.median(r["ceiling"] for r in rows)
        merged.append(row)
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="kernels.json [sdpa.json]")
    parser.add_argument("--kernels", nargs="+", default=[], help="gpu_kernel_bench --out files")
    parser.add_argument("--peer", nargs="+", default=[], help="sdpa_peer.py --out files")
    args = parser.parse_args()
    kernel_files = args.kernels or args.files[:1]
    peer_files = args.peer or args.files[1:2]
    if not kernel_files:
        parser.error("give a kernels.json (positional or --kernels)")
    kernels = merge([json.load(open(f)) for f in kernel_files])
    peers = [json.load(open(f)) for f in peer_files]
    peer_ms = {}
    if peers:
        peer_ms = {key(r): statistics.median(p_ms) for r in peers[0]["results"]
                   for p_ms in [[x["ms"] for p in peers for x in p["results"] if key(x) == key(r)]]}
    several = len(kernel_files) > 1
    time_header = "time (ms)"
    if several:
        time_header += f", median of {len(kernel_files)} runs [range]"
    print(f"| kernel | shape | dtype | {time_header} | rate | share of ceiling | vs PyTorch SDPA |")
    print("|---|---|---|---|---|---|---|")
    for r in kernels:
        ceiling = ""
        if r["ceiling"] > 0:
            ceiling = f"{100 * r['value'] / r['ceiling']:.0f}% of {r['ceiling_name']}"
        versus = ""
        if key(r) in peer_ms:
            versus = f"{peer_ms[key(r)] / r['ms']:.2f}x (SDPA {peer_ms[key(r)]:.3f} ms)"
        time = f"{r['ms']:.4f}"
        if several:
            time += f" [{r['ms_min']:.4f}, {r['ms_max']:.4f}]"
        print(f"| {r['kernel']} | {r['shape']} | {r['dtype']} | {time} | "
              f"{r['value']:.0f} {r['metric']} | {ceiling} | {versus} |")
    if peers:
        print()
        runs = f" (median of {len(peers)} runs)" if len(peers) > 1 else ""
        print(f"PyTorch {peers[0].get('torch')} on {peers[0].get('device')}{runs}; "
              "kernels PyTorch ran:")
        for r in peers[0]["results"]:
            names = ", ".join(n for n in r["peer_kernels"] if "Memset" not in n)
            print(f"- {r['kernel']}, {r['shape']}, {r['dtype']}: `{names}`")


if __name__ == "__main__":
    main()
