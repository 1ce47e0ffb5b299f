#!/usr/bin/env python3
"""Joins gpu_kernel_bench and sdpa_peer results into the table of docs/results/gpu_kernels.md.

    python3 tools/gpu_kernel_report.py RESULTS/kernels.json RESULTS/sdpa.json > table.md

Each kernel's rate is shown against its ceiling (copy bandwidth or cuBLAS GEMM rate, measured in
the same run) and, for attention, against PyTorch's scaled_dot_product_attention on the same
shapes and card (peer time / our time: above 1 means faster than PyTorch).
"""
import json
import sys


def main():
    kernels = json.load(open(sys.argv[1]))
    peer = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else {"results": []}
    peer_ms = {(r["kernel"], r["shape"], r["dtype"]): r["ms"] for r in peer["results"]}
    print("| kernel | shape | dtype | time (ms) | rate | share of ceiling | vs PyTorch SDPA |")
    print("|---|---|---|---|---|---|---|")
    for r in kernels:
        ceiling = ""
        if r["ceiling"] > 0:
            ceiling = f"{100 * r['value'] / r['ceiling']:.0f}% of {r['ceiling_name']}"
        versus = ""
        key = (r["kernel"], r["shape"], r["dtype"])
        if key in peer_ms:
            versus = f"{peer_ms[key] / r['ms']:.2f}x (SDPA {peer_ms[key]:.3f} ms)"
        print(f"| {r['kernel']} | {r['shape']} | {r['dtype']} | {r['ms']:.4f} | "
              f"{r['value']:.0f} {r['metric']} | {ceiling} | {versus} |")
    if peer.get("results"):
        print()
        print(f"PyTorch {peer.get('torch')} on {peer.get('device')}; kernels PyTorch ran:")
        for r in peer["results"]:
            names = ", ".join(n for n in r["peer_kernels"] if "Memset" not in n)
            print(f"- {r['kernel']}, {r['shape']}, {r['dtype']}: `{names}`")


if __name__ == "__main__":
    main()
