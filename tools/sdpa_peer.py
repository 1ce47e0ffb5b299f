#!/usr/bin/env python3
"""The peer for tools/gpu_kernel_bench: PyTorch's scaled_dot_product_attention, same shapes.

    python3 tools/sdpa_peer.py --out RESULTS/sdpa.json      (on a GPU host with PyTorch)

Decode: q [64, 40, 1, 128] against the gathered (contiguous) K/V [64, 40, 1024, 128].
Prefill: causal, [1, 40, 4096, 128] and [4, 40, 1024, 128]. fp16 and bf16. CUDA events around
10 back-to-back calls, median of --reps after warm-up, as gpu_kernel_bench times; random inputs.
It also records which kernels PyTorch ran.
"""
import argparse
import json

import torch


def median_ms(fn, reps, launches=10):
    """Median over `reps` of the time of `launches` back-to-back calls, per call (as the bench)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(launches):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / launches)
    times.sort()
    return times[len(times) // 2]


def kernels_of(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="")
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    results = []
    for dtype, name in [(torch.float16, "fp16"), (torch.bfloat16, "bf16")]:
        q = torch.randn(64, 40, 1, 128, device="cuda", dtype=dtype)
        k = torch.randn(64, 40, 1024, 128, device="cuda", dtype=dtype)
        v = torch.randn(64, 40, 1024, 128, device="cuda", dtype=dtype)
        fn = lambda: sdpa(q, k, v)
        ms = median_ms(fn, args.reps)
        results.append({"kernel": "paged decode attention", "dtype": name, "ms": ms,
                        "shape": "batch 64, ctx 1024, 40x128 heads", "peer_kernels": kernels_of(fn)})
        for batch, length in [(1, 4096), (4, 1024)]:
            q = torch.randn(batch, 40, length, 128, device="cuda", dtype=dtype)
            k = torch.randn(batch, 40, length, 128, device="cuda", dtype=dtype)
            v = torch.randn(batch, 40, length, 128, device="cuda", dtype=dtype)
            fn = lambda: sdpa(q, k, v, is_causal=True)
            ms = median_ms(fn, args.reps)
            results.append({"kernel": "prefill attention (causal)", "dtype": name, "ms": ms,
                            "shape": f"{batch} x {length} tokens, 40x128 heads",
                            "peer_kernels": kernels_of(fn)})
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "results": results}
    text = json.dumps(info, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
