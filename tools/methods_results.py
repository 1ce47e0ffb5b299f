#!/usr/bin/python3
"""Tables and plots of issue 6's experiments (tools/methods_experiments.sh's runs).

    /usr/bin/python3 tools/methods_results.py [RUNS_DIR] [OUT_PREFIX]
        (defaults: docs/results/methods_runs, docs/results/methods)

Reads every RUN/train_log.json (the last epoch's test accuracy of each score) and each DHKD
run's gradient_cosine.csv, and writes OUT_PREFIX_tables.md (mean +- sample std over seeds, and
every seed's value) with OUT_PREFIX_sla.png, OUT_PREFIX_dhkd.png and OUT_PREFIX_cosine.png. Runs
that have not finished (no RUN/done) are left out and counted.
"""
import csv
import glob
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = sys.argv[1] if len(sys.argv) > 1 else "docs/results/methods_runs"
OUT = sys.argv[2] if len(sys.argv) > 2 else "docs/results/methods"

# (row label, run arm, score) of each table.
SLA_ROWS = [
    ("Baseline", "baseline", "main"),
    ("DA", "da", "main"),
    ("MT", "mt", "main"),
    ("SLA+SI", "sla", "si"),
    ("SLA+AG", "sla", "ag"),
    ("SLA+SD", "sla_sd", "sd"),
    ("(SLA+SD run) SI", "sla_sd", "si"),
    ("(SLA+SD run) AG", "sla_sd", "ag"),
]
DHKD_ROWS = [
    ("1. CE", "ce"),
    ("2. CE + softmax KD (T=4)", "kd"),
    ("3. BinaryKL only", "bkl"),
    ("4. CE + BinaryKL, one head", "ce_bkl"),
    ("5a. DHKD, linear g2, GA", "dhkd_linear_ga"),
    ("5b. DHKD, linear g2, no GA", "dhkd_linear"),
    ("5c. DHKD, nonlinear g2, GA", "dhkd_nonlinear_ga"),
    ("5d. DHKD, nonlinear g2, no GA", "dhkd_nonlinear"),
    ("6. DHKD with plain BinaryKL (linear, GA)", "dhkd_bkl_linear_ga"),
]
# The mechanism runs (every 10 steps); the arms of the table log every 100 steps too.
COSINE_ARMS = ["ce_bkl", "dhkd_nonlinear_ga"]


def final_accuracies(arm_dir):
    """{seed dir: {score: accuracy}} of the finished runs, and how many are unfinished."""
    runs, unfinished = {}, 0
    for seed_dir in sorted(glob.glob(os.path.join(arm_dir, "seed*"))):
        if not os.path.exists(os.path.join(seed_dir, "done")):
            unfinished += 1
            continue
        epochs = json.load(open(os.path.join(seed_dir, "train_log.json")))["epochs"]
        runs[os.path.basename(seed_dir)] = epochs[-1]["accuracy"]
    return runs, unfinished


def summary(values):
    if not values:
        return "not run", None, None
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}", mean, std


def table(title, rows, regime_dir, lines, unfinished_total):
    lines += [f"### {title}", "", "| arm | test accuracy % (mean ± std) | seeds |", "|---|---|---|"]
    plotted = []
    for label, arm, score in rows:
        runs, unfinished = final_accuracies(os.path.join(regime_dir, arm))
        unfinished_total[0] += unfinished
        values = [acc[score] for acc in runs.values() if score in acc]
        text, mean, std = summary(values)
        seeds = ", ".join(f"{100 * v:.2f}" for v in values)
        lines.append(f"| {label} | {text} | {len(values)}: {seeds} |")
        plotted.append((label, mean, std, values))
    lines.append("")
    return plotted


def cosine_rows(mechanism_dir, lines):
    lines += ["### Mechanism test: cosine between the CE and distillation gradients", "",
              "Over every logged step (every 10 steps) of every seed of the mechanism runs "
              "(`dhkd_mechanism/`: the same training as the table's arm, logged more often). "
              "For dhkd the head group is both heads, where the cosine is 0 by construction.", "",
              "| arm | head cosine: mean, fraction < 0 | backbone cosine: mean, fraction < 0 | rows |",
              "|---|---|---|---|"]
    series = {}
    for arm in COSINE_ARMS:
        head, backbone, steps = [], [], []
        pattern = os.path.join(mechanism_dir, arm, "seed*", "gradient_cosine.csv")
        for path in sorted(glob.glob(pattern)):
            for row in csv.DictReader(open(path)):
                head.append(float(row["head_cosine"]))
                backbone.append(float(row["backbone_cosine"]))
                steps.append(int(row["step"]))
        if not head:
            continue
        frac = lambda xs: sum(x < 0 for x in xs) / len(xs)  # noqa: E731
        lines.append(f"| {arm} | {statistics.mean(head):+.3f}, {frac(head):.2f} | "
                     f"{statistics.mean(backbone):+.3f}, {frac(backbone):.2f} | {len(head)} |")
        series[arm] = (steps, head, backbone)
    lines.append("")
    return series


def dot_plot(path, panels, ylabel):
    """Each arm's seeds (grey) and their mean +- std (blue), on an axis that does not start at 0."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, arms) in zip(axes[0], panels):
        arms = [arm for arm in arms if arm[1] is not None]
        if not arms:
            continue
        for x, (label, mean, std, values) in enumerate(arms):
            ax.scatter([x] * len(values), [100 * v for v in values], s=14, color="0.6", zorder=2)
            ax.errorbar([x + 0.15], [100 * mean], yerr=[100 * std], fmt="o", color="#2a5d94",
                        capsize=4, zorder=3)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels([arm[0] for arm in arms], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    lines = ["<!-- Generated by tools/methods_results.py from "
             f"{RUNS}; do not edit by hand. -->", ""]
    unfinished = [0]
    lines += ["## SLA", ""]
    sla_panels = []
    for regime, title in (("sla_subset", "5000-image subset"), ("sla_full", "full 60000 images")):
        bars = table(f"SLA, {title}", SLA_ROWS, os.path.join(RUNS, regime), lines, unfinished)
        sla_panels.append((f"SLA on Fashion-MNIST, {title}", bars[:6]))
    lines += ["## DHKD", ""]
    dhkd_dir = os.path.join(RUNS, "dhkd")
    teacher = os.path.join(dhkd_dir, "teacher", "train_log.json")
    if os.path.exists(teacher):
        acc = json.load(open(teacher))["epochs"][-1]["accuracy"]["main"]
        lines += [f"Teacher ({json.load(open(teacher))['model']}): {100 * acc:.2f}% test accuracy.",
                  ""]
    dhkd_bars = table("DHKD students (main head)", [(l, a, "main") for l, a in DHKD_ROWS],
                      dhkd_dir, lines, unfinished)
    series = cosine_rows(os.path.join(RUNS, "dhkd_mechanism"), lines)
    if unfinished[0]:
        lines += [f"{unfinished[0]} run(s) had not finished and are left out.", ""]
    open(OUT + "_tables.md", "w").write("\n".join(lines))
    dot_plot(OUT + "_sla.png", sla_panels, "test accuracy (%)")
    dot_plot(OUT + "_dhkd.png", [("DHKD arms (student main head)", dhkd_bars)],
             "test accuracy (%)")
    if series:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, index, title in ((axes[0], 1, "head parameters"), (axes[1], 2, "backbone parameters")):
            for arm, values in series.items():
                ax.scatter(values[0], values[index], s=6, label=arm, alpha=0.5)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_title(f"cos(grad CE, grad distill) on the {title}", fontsize=10)
            ax.set_xlabel("training step")
        axes[0].set_ylabel("cosine")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT + "_cosine.png", dpi=110)
        plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
