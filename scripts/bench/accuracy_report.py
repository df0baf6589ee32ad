"""bench-accuracy's report: each run's curve in seed-epochs, issue 25's targets, the
table and the plot (scripts/bench/accuracy.py measures; this module only reads results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def curve(result: dict) -> list[tuple[float, float]]:
    """(seed-epochs so far, validation accuracy) after every epoch of a run's result, each
    epoch in the unit of the invocation that trained it (its `seed_epoch_s`, else the run's)."""
    points, spent = [], 0.0
    for epoch in result["epochs"]:
        spent += epoch["seconds"] / epoch.get("seed_epoch_s", result["seed_epoch_s"])
        points.append((spent, epoch["val_accuracy"]))
    return points


def best_within(result: dict | None, seed_epochs: float) -> float | None:
    """The best validation accuracy a run had reached within `seed_epochs`."""
    reached = [accuracy for spent, accuracy in curve(result) if spent <= seed_epochs] if result else []  # fmt: skip
    return max(reached, default=None)


def time_to(runs: dict, accuracy: float) -> tuple[float | None, str]:
    """The fewest seed-epochs any run took to reach `accuracy`, and which run."""
    firsts = {
        name: next((t for t, a in curve(r) if a >= accuracy), None) for name, r in runs.items()
    }
    reached = {name: t for name, t in firsts.items() if t is not None}
    if not reached:
        return None, ""
    name = min(reached, key=reached.get)
    return reached[name], name


def targets(runs: dict) -> list[dict]:
    """Issue 25's targets, each with its measured value and whether it was hit."""
    best_150 = max((best_within(r, 150.0) or 0.0 for r in runs.values()), default=0.0) or None
    to_60, by = time_to(runs, 0.60)
    default_60 = best_within(runs.get("default"), 60.0)
    at_least = {0.85: lambda v: v >= 0.85, 0.90: lambda v: v >= 0.90}
    rows = [
        ("default, best val accuracy within 60 seed-epochs", ">= 0.85", default_60, at_least[0.85]),
        ("... the goal beyond it", ">= 0.90", default_60, at_least[0.90]),
        (f"seed-epochs to the seed's 60% ({by or 'no run'})", "<= 1", to_60, lambda v: v <= 1.0),
        ("any run, best val accuracy within 150 seed-epochs", ">= 0.90", best_150, at_least[0.90]),
    ]
    for name, result in runs.items():  # a budgeted process ends within 2 minutes of it
        if "budget_s" in result:
            over = result["process_s"] - result["budget_s"]
            rows.append((f"{name}: process start to exit past its budget (s)", "<= 120", over, lambda v: v <= 120))  # fmt: skip
    return [
        {"target": target, "goal": goal, "measured": value, "hit": None if value is None else check(value)}
        for target, goal, value, check in rows
    ]  # fmt: skip


def print_report(report: dict, out: Path) -> None:
    runs = report["runs"]
    print(f"\n{'run':<15}{'epochs':>7}{'best acc':>10}{'final':>8}{'flip TTA':>10}{'minutes':>9}{'seed-epochs':>13}{'unit s':>13}  measured")  # fmt: skip
    for name, r in runs.items():
        points = curve(r)
        minutes = sum(e["seconds"] for e in r["epochs"]) / 60
        tta = f"{r['flip_tta']['flip_tta']:.4f}" if "flip_tta" in r else "n/a"
        unit = f"{r['seed_epoch_s']:.1f}" + (
            f"/{r['seed_epoch_s_after']:.1f}" if "seed_epoch_s_after" in r else ""
        )  # before/after
        print(f"{name:<15}{len(points):>7}{max(a for _, a in points):>10.4f}{points[-1][1]:>8.4f}{tta:>10}{minutes:>9.1f}{points[-1][0]:>13.1f}{unit:>13}  {r['measured']}")  # fmt: skip
    print()
    for row in report["targets"]:
        shown = "n/a" if row["measured"] is None else f"{row['measured']:.3f}"
        verdict = {True: "yes", False: "MISSED", None: ""}[row["hit"]]
        print(f"{row['target']:<52}{row['goal']:<9}{shown:<9}{verdict}")
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


def plot(runs: dict, path: Path) -> None:
    """Validation accuracy against training minutes and against seed-epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_unit) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, result in runs.items():
        if name.startswith("ablate-"):
            continue
        points = curve(result)
        units, accuracies = [t for t, _ in points], [a for _, a in points]
        minutes = np.cumsum([epoch["seconds"] for epoch in result["epochs"]]) / 60
        by_time.plot(minutes, accuracies, marker=".", label=name)
        by_unit.plot(units, accuracies, marker=".", label=name)
    by_time.set(xlabel="training wall time (minutes, this machine)", ylabel="validation accuracy")
    by_unit.set(xlabel="seed-epochs", xscale="log")
    for axes in (by_time, by_unit):
        axes.grid(alpha=0.3)
    by_unit.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
