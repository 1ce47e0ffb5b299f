#!/usr/bin/python3
"""Plots actor_bench results: raw CAF vs Troupe under each scheduler policy.

    /usr/bin/python3 tools/plot_actor_bench.py docs/results/actors_bench_dev.csv [more.csv ...]

Writes a PNG next to each CSV (same name, .png): one panel per measurement, one bar per
(policy, stack) at the median over runs, and a dot per run.
"""
import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"raw CAF": "#999999", "Troupe": "#2b6cb0"}


def plot(path):
    runs = {}  # (measurement, unit) -> (policy, stack) -> [values]
    with open(path) as f:
        for row in csv.DictReader(f):
            panel = runs.setdefault((row["measurement"], row["unit"]), {})
            panel.setdefault((row["policy"], row["stack"]), []).append(float(row["value"]))
    figure, axes = plt.subplots(2, 3, figsize=(11, 6.5))
    for axis, ((measurement, unit), bars) in zip(axes.flat, runs.items()):
        labels = []
        for i, ((policy, stack), values) in enumerate(bars.items()):
            axis.bar(i, statistics.median(values), color=COLORS[stack])
            axis.scatter([i] * len(values), values, color="black", s=6, zorder=3)
            labels.append(f"{stack}\n{policy}")
        axis.set_xticks(range(len(labels)))
        axis.set_xticklabels(labels, fontsize=7)
        axis.set_title(measurement, fontsize=9)
        axis.set_ylabel(unit, fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
    figure.suptitle(path.rsplit("/", 1)[-1], fontsize=10)
    figure.tight_layout()
    out = path[: -len(".csv")] + ".png"
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        plot(argument)
