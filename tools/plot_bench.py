#!/usr/bin/python3
"""Plots a `troupe bench` results file as DistServe's Fig. 8 does.

    /usr/bin/python3 tools/plot_bench.py sweep.json sweep.png

Left: SLO attainment against the request rate (one line per SLO scale, one point per run).
Right: SLO attainment against the SLO scale (one line per rate). The dashed line is the
attainment target (90% unless --attainment_target said otherwise). Without --goodput the file
has no attainment, and the plot shows throughput and P99 TTFT against the rate instead.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(json_path, png_path):
    with open(json_path) as f:
        results = json.load(f)
    runs = sorted(results["runs"], key=lambda run: run["rate_per_s"])
    target = 100 * results.get("attainment_target", 0.9)
    rates = [run["rate_per_s"] for run in runs]
    has_slo = any(run["slo_attainment_by_scale"] for run in runs)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    config = results["config"]
    workload = config.get("dataset") or config.get("trace", "trace")
    figure.suptitle(f"troupe bench: {workload} against {config.get('base_url', '?')}"
                    + (f", SLO {config['goodput']}" if config.get("goodput") else ""))
    if has_slo:
        scales = [entry["scale"] for entry in runs[0]["slo_attainment_by_scale"]]
        for i, scale in enumerate(scales):
            attainment = [100 * run["slo_attainment_by_scale"][i]["attainment"] for run in runs]
            left.plot(rates, attainment, marker="o", label=f"SLO x{scale:g}")
        left.set_xlabel("rate (requests/s)")
        left.set_ylabel("SLO attainment (%)")
        left.set_ylim(-5, 105)
        left.axhline(target, linestyle="--", color="#999999")
        left.legend(fontsize=8)
        for run in runs:
            right.plot(scales, [100 * e["attainment"] for e in run["slo_attainment_by_scale"]],
                       marker="o", label=f"{run['rate_per_s']:g} req/s")
        right.set_xlabel("SLO scale")
        right.set_ylabel("SLO attainment (%)")
        right.set_ylim(-5, 105)
        right.axhline(target, linestyle="--", color="#999999")
        right.legend(fontsize=8)
    else:
        left.plot(rates, [run["summary"]["request_throughput"] for run in runs], marker="o")
        left.set_xlabel("offered rate (requests/s)")
        left.set_ylabel("completed (requests/s)")
        right.plot(rates, [run["summary"]["ttft"]["p99_ms"] for run in runs], marker="o",
                   label="P99 TTFT")
        right.plot(rates, [run["summary"]["tpot"]["p99_ms"] for run in runs], marker="o",
                   label="P99 TPOT")
        right.set_xlabel("rate (requests/s)")
        right.set_ylabel("ms")
        right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tools/plot_bench.py RESULTS.json OUT.png")
    plot(sys.argv[1], sys.argv[2])
