"""The model card: a Markdown page with the metrics table and ROC, PR, calibration and importance plots.

Written next to metrics.json by `hotvideo train` and `hotvideo evaluate`, so every model version
carries its own evidence. Plots are small PNGs drawn on bare `Figure`s (the Agg canvas: no pyplot
state, no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from model.metrics import METRIC_NAMES

CARD_FILE = "model_card.md"
MODELS = ("model", "baseline_sh", "baseline_prototype")
LABELS = {
    "model": "model (calibrated)",
    "baseline_sh": "baseline A: log views (S–H)",
    "baseline_prototype": "baseline B: seed-000 inputs",
}
DPI = 72


@dataclass(frozen=True)
class Curves:
    """What the report plots for one horizon: natural-sample labels and every model's probabilities."""

    horizon: str
    y: npt.NDArray[np.int64]
    probs: dict[str, npt.NDArray[np.float64]]
    importances: list[tuple[str, float]] = field(default_factory=list)


def _figure(curves: Sequence[Curves]) -> tuple[Any, Any]:
    fig = Figure(figsize=(3.6 * len(curves), 3.2))
    axes = fig.subplots(1, len(curves), squeeze=False)
    return fig, axes[0]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def _plots(out_dir: Path, curves: Sequence[Curves]) -> list[str]:
    """roc.png, pr.png, calibration.png (and importance.png when importances are known)."""
    fig, axes = _figure(curves)
    for ax, c in zip(axes, curves, strict=True):
        for name, prob in c.probs.items():
            fpr, tpr, _ = roc_curve(c.y, prob)
            ax.plot(fpr, tpr, label=LABELS.get(name, name), lw=1.2)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=f"ROC {c.horizon}", xlabel="false positive rate", ylabel="true positive rate")
    axes[0].legend(fontsize=7, loc="lower right")
    _save(fig, out_dir / "roc.png")

    fig, axes = _figure(curves)
    for ax, c in zip(axes, curves, strict=True):
        for name, prob in c.probs.items():
            precision, recall, _ = precision_recall_curve(c.y, prob)
            ax.plot(recall, precision, label=LABELS.get(name, name), lw=1.2)
        ax.axhline(float(np.mean(c.y)), color="k", ls=":", lw=0.8)
        ax.set(title=f"PR {c.horizon}", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    axes[0].legend(fontsize=7, loc="upper right")
    _save(fig, out_dir / "pr.png")

    fig, axes = _figure(curves)
    for ax, c in zip(axes, curves, strict=True):
        for name, prob in c.probs.items():
            frac, mean_pred = calibration_curve(c.y, prob, n_bins=10, strategy="quantile")
            ax.plot(mean_pred, frac, "o-", ms=3, label=LABELS.get(name, name), lw=1.0)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=f"calibration {c.horizon}", xlabel="predicted P(hot)", ylabel="observed share hot")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
    axes[0].legend(fontsize=7, loc="upper left")
    _save(fig, out_dir / "calibration.png")
    files = ["roc.png", "pr.png", "calibration.png"]

    if all(c.importances for c in curves):
        fig, axes = _figure(curves)
        for ax, c in zip(axes, curves, strict=True):
            top = c.importances[:12][::-1]
            ax.barh([name for name, _ in top], [value for _, value in top])
            ax.set(title=f"importance {c.horizon}", xlabel="PR-AUC drop when permuted")
            ax.tick_params(axis="y", labelsize=7)
        _save(fig, out_dir / "importance.png")
        files.append("importance.png")
    return files


def _cell(block: Mapping[str, Any], metric: str) -> str:
    value = block.get(metric)
    if value is None:
        return "–"
    lo, hi = block["ci95"][metric]
    return f"{value:.3f}" if lo is None else f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def metrics_table(horizons: Mapping[str, Mapping[str, Any]], sample: str) -> str:
    """Markdown table of every model's metrics with 95 % bootstrap intervals, one row per
    (horizon, model); `sample` is "natural" (top-level blocks) or "matched"."""
    head = "| horizon | model | n (hot) | " + " | ".join(METRIC_NAMES) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRIC_NAMES))]
    for h, metrics in horizons.items():
        blocks = metrics if sample == "natural" else metrics["matched"]
        for name in MODELS:
            b = blocks[name]
            cells = " | ".join(_cell(b, m) for m in METRIC_NAMES)
            lines.append(f"| {h} | {LABELS[name]} | {b['n']} ({b['positives']}) | {cells} |")
    return "\n".join(lines)


def write_report(out_dir: Path, summary: Mapping[str, Any], curves: Sequence[Curves], intro: str) -> Path:
    """model_card.md and its plots in out_dir; returns the card's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(out_dir, curves)
    horizons = summary["horizons"]
    diffs = [
        f"| {h} | {m.get('chosen', '')} | [{lo:.3f}, {hi:.3f}] |"
        for h, m in horizons.items()
        for lo, hi in [m["model"].get("diff_vs_baseline_sh", {}).get("pr_auc", [None, None])]
        if lo is not None
    ]
    ranges = [
        f"| {h} | {q['n']} | {q['coverage_10_90']:.3f} | {q['median_abs_log10_error']:.3f} | "
        f"{q['play_range_hit_rate']:.3f} |"
        for h, m in horizons.items()
        for q in [m["play_range"]]
        if q["n"]
    ]
    excluded = [
        f"| {h} | {e.get('unknown_label', 0)} | {e.get('already_hot', 0)} | {e.get('insufficient_data', 0)} |"
        for h, m in horizons.items()
        for e in [m["excluded"]]
    ]
    parts = [
        f"# Model card: {summary['version']}",
        intro,
        "## Natural distribution (every labelled video of the test period)",
        "Point estimate and 95 % bootstrap interval; labels at each model's threshold (best F1 on the "
        "validation period).",
        metrics_table(horizons, "natural"),
        "## Matched sample (positives with their matched negatives, seed 001)",
        metrics_table(horizons, "matched"),
        "## Model minus baseline A, PR-AUC (paired bootstrap, natural sample)",
        "\n".join(["| horizon | chosen model | 95 % interval of the difference |", "|---|---|---|", *diffs]),
        "## play_range (final views, 10–90 % quantiles)",
        "\n".join(
            [
                "| horizon | n | coverage 10–90 % | median abs log10 error | range hit rate |",
                "|---|---|---|---|---|",
                *ranges,
            ]
        ),
        "## Excluded videos (reported apart, never scored as predictions)",
        "\n".join(
            [
                "| horizon | unknown label | already hot at Δt | no snapshot by Δt |",
                "|---|---|---|---|",
                *excluded,
            ]
        ),
        "## Plots",
        *(f"![{name[:-4]}]({name})" for name in plots),
    ]
    path = out_dir / CARD_FILE
    path.write_text("\n\n".join(parts) + "\n")
    return path
