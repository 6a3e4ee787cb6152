"""Figures of the results bundle, drawn once by the pipeline and shown by the report.

Drawn with matplotlib's object API (``Figure`` + Agg canvas), so nothing here
touches pyplot's global backend. Every function writes PNG files into the
bundle's ``figures/`` folder and returns their names relative to the bundle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["path_diagram", "diverging_bars", "forest_plot", "invariance_plot"]

# Colours for 5 ordered categories: disagree (warm) .. neutral (grey) .. agree (cool).
_DIVERGING = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})
    return f"figures/{path.name}"


def path_diagram(params: pd.DataFrame, fig_dir: Path, model: str,
                 labels: dict[str, str] | None = None) -> dict[str, str]:
    """The structural part with standardized coefficients and stars (SVG and PNG); nodes by ``labels``."""
    from analysis.study.diagram import render_path_diagram

    out = {}
    for ext in ("svg", "png"):
        target = fig_dir / f"path_{model}.{ext}"
        render_path_diagram(params, target, title=None, labels=labels)
        out[ext] = f"figures/{target.name}"
    return out


def diverging_bars(dist: pd.DataFrame, fig_dir: Path, instrument=None) -> list[dict[str, str]]:
    """One diverging stacked bar chart per construct: disagreement left of 0, agreement right.

    The middle category is split across 0. Suppressed cells (disclosure
    control) have no width and the item's label says so.
    """
    out: list[dict[str, str]] = []  # a list: the instrument's order survives sorted JSON keys
    if dist is None or not len(dist):
        return out
    for construct, block in dist.groupby("construct", sort=False):
        items = list(dict.fromkeys(block["item"]))
        codes = sorted(block["code"].unique())
        k = len(codes)
        mid = (k - 1) / 2
        fig = _figure(8.0, 0.55 * len(items) + 1.4)
        ax = fig.add_subplot(1, 1, 1)
        colours = _DIVERGING if k == 5 else [_DIVERGING[min(4, round(4 * j / max(k - 1, 1)))] for j in range(k)]
        wide = (block.pivot_table(index="item", columns="code", values="pct", aggfunc="first")
                .reindex(index=items, columns=codes).astype(float).fillna(0.0))
        pct = wide.to_numpy()
        hidden = block.groupby("item")["suppressed"].any().reindex(items).to_numpy()
        # left edge of each bar: all disagreement plus half the neutral share, to the left of 0
        left = -(pct[:, : int(math.floor(mid))].sum(axis=1) + (pct[:, int(mid)] / 2 if k % 2 else 0))
        labels = block.drop_duplicates("code").set_index("code")["label"]
        rows = np.arange(len(items))
        for j, code in enumerate(codes):
            ax.barh(rows, pct[:, j], left=left, color=colours[j], edgecolor="white", linewidth=0.5,
                    label=str(labels.get(code, code)))
            for r in np.flatnonzero(pct[:, j] >= 8):
                ax.text(left[r] + pct[r, j] / 2, r, f"{pct[r, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if j in (0, k - 1) else "black")
            left = left + pct[:, j]
        for r in np.flatnonzero(hidden):
            ax.text(101, r, "[s]", va="center", fontsize=7)
        # the item's code and the start of its wording: a reader sees what was asked, not only a code
        ylabels = []
        for it in items:
            row = block[block["item"] == it].iloc[0]
            text = str(row.get("text", "") or "")
            short = text if len(text) <= 42 else text[:40].rsplit(" ", 1)[0] + "…"
            ylabels.append(f"{it}{' (R)' if bool(row['reverse']) else ''}  {short}".rstrip())
        ax.set_yticks(range(len(items)), ylabels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlim(-100, 100)
        ax.set_xticks([-100, -50, 0, 50, 100], ["100%", "50%", "0", "50%", "100%"])
        name = next((c.label for c in getattr(instrument, "constructs", []) if c.id == construct), construct)
        ax.set_title(f"{name} ({construct}): answers, % of those answering", fontsize=10, loc="left")
        ax.legend(ncol=k, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        out.append({"construct": str(construct), "file": _save(fig, fig_dir / f"items_{construct}.png")})
    return out


def forest_plot(effects: pd.DataFrame, fig_dir: Path, info: dict[str, Any] | None = None) -> str:
    """Defined (indirect and total) effects with their bootstrap intervals."""
    eff = effects.dropna(subset=["est"]).reset_index(drop=True)
    fig = _figure(7.5, 0.6 * len(eff) + 1.3)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(eff))
    lo = eff["ci.lower"].astype(float).to_numpy()
    hi = eff["ci.upper"].astype(float).to_numpy()
    est = eff["est"].astype(float).to_numpy()
    excludes_zero = (lo > 0) | (hi < 0)
    ax.hlines(y, lo, hi, color=np.where(excludes_zero, "#2166ac", "#999999"), linewidth=2)
    ax.plot(est, y, "o", color="black", markersize=5)
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, [str(e).replace("_", " ") for e in eff["effect"]])
    ax.invert_yaxis()
    what = ""
    if info:
        what = f" ({info.get('ci', 'perc')} {100 * float(info.get('level', 0.95)):.0f}% CI, R = {info.get('R')})"
    ax.set_title("Indirect and total effects, bootstrap intervals" + what, fontsize=10, loc="left")
    ax.set_xlabel("effect (unstandardized)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(fig, fig_dir / "forest_effects.png")


def invariance_plot(invariance: dict[str, Any], fig_dir: Path) -> dict[str, str]:
    """CFI and RMSEA up the ladder (configural -> strict), one line per grouping variable."""
    fig = _figure(8.0, 3.2)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for group, d in invariance.items():
        steps = pd.DataFrame(d.get("steps", []))
        if not len(steps):
            continue
        cfi = "cfi.robust" if "cfi.robust" in steps and steps["cfi.robust"].notna().all() else "cfi"
        rmsea = "rmsea.robust" if "rmsea.robust" in steps and steps["rmsea.robust"].notna().all() else "rmsea"
        ax1.plot(steps["name"], steps[cfi].astype(float), marker="o", label=group)
        ax2.plot(steps["name"], steps[rmsea].astype(float), marker="o", label=group)
    ax1.set_title("CFI", fontsize=10, loc="left")
    ax2.set_title("RMSEA", fontsize=10, loc="left")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    ax1.legend(fontsize=8, frameon=False)
    return {"ladder": _save(fig, fig_dir / "invariance_ladder.png")}
