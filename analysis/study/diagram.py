"""Path diagrams of a fitted model, drawn from the ParameterTable.

The structural part (regressions among latent and observed variables, and
covariances among exogenous ones) is drawn with standardized coefficients and
significance stars. Layout by the dot engine of the ``graphviz-pure`` wheel,
so no system Graphviz is needed; where its binary is missing, matplotlib draws
a layered layout instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from instruments.atomic import place_file

__all__ = ["path_diagram_dot", "render_path_diagram", "significance_stars"]


def significance_stars(pvalue: float) -> str:
    """``***`` p < .001, ``**`` p < .01, ``*`` p < .05, else nothing."""
    if pvalue is None or not np.isfinite(pvalue):
        return ""
    return "***" if pvalue < 0.001 else "**" if pvalue < 0.01 else "*" if pvalue < 0.05 else ""


def _structural_rows(params: pd.DataFrame, group: int, measurement: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    pt = params[params["group"] == group] if "group" in params else params
    latents = set(pt.loc[pt["op"] == "=~", "lhs"])
    paths = pt[pt["op"] == "~"]
    if measurement:
        paths = pd.concat([paths, pt[pt["op"] == "=~"]])
    regressed = set(paths.loc[paths["op"] == "~", "lhs"])
    covs = pt[(pt["op"] == "~~") & (pt["lhs"] != pt["rhs"])]
    nodes_in_paths = set(paths["lhs"]) | set(paths["rhs"])
    # Covariances between exogenous variables of the structural part (e.g. CULT ~~ PART).
    covs = covs[
        covs["lhs"].isin(nodes_in_paths) & covs["rhs"].isin(nodes_in_paths)
        & ~covs["lhs"].isin(regressed) & ~covs["rhs"].isin(regressed)
        & (covs["lhs"].isin(latents) | covs["rhs"].isin(latents) | ~measurement)
    ]
    return paths, covs


def _label(row: pd.Series, std: str) -> str:
    value = row.get(std, row.get("est"))
    if value is None or not np.isfinite(value):
        return ""
    return f"{value:.2f}{significance_stars(row.get('pvalue', np.nan))}"


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '\\"') + '"'


def path_diagram_dot(
    params: pd.DataFrame,
    *,
    group: int = 1,
    std: str = "std.all",
    measurement: bool = False,
    title: str | None = None,
    alpha: float = 0.05,
    labels: dict[str, str] | None = None,
) -> str:
    """DOT source of the path diagram: solid arrows significant at ``alpha``, dashed otherwise;
    ``labels`` names the nodes (a construct's label instead of its code)."""
    paths, covs = _structural_rows(params, group, measurement)
    latents = set(params.loc[params["op"] == "=~", "lhs"])
    nodes = sorted(set(paths["lhs"]) | set(paths["rhs"]) | set(covs["lhs"]) | set(covs["rhs"]))
    lines = [
        "digraph model {",
        '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.35, ranksep=0.9'
        + (f", label={_quote(title)}, labelloc=t" if title else "") + "];",
        '  node [fontname="Helvetica", fontsize=12];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in nodes:
        shape = "ellipse" if node in latents else "box"
        named = ""
        if labels and node in labels:
            named = ", label=" + _quote(_node_text(node, labels).replace("\n", "\\n"))  # DOT's own line break
        lines.append(f"  {_quote(node)} [shape={shape}{named}];")
    for _, row in paths.iterrows():
        # `y ~ x` is drawn x -> y; `f =~ x` is drawn f -> x.
        src, dst = (row["rhs"], row["lhs"]) if row["op"] == "~" else (row["lhs"], row["rhs"])
        p = row.get("pvalue", np.nan)
        style = "solid" if (p is not None and np.isfinite(p) and p < alpha) else "dashed"
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(_label(row, std))}, style={style}];")
    for _, row in covs.iterrows():
        lines.append(
            f"  {_quote(row['lhs'])} -> {_quote(row['rhs'])} "
            f"[dir=both, style=dotted, constraint=false, label={_quote(_label(row, std))}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_binary() -> str | None:
    here = Path(sys.executable).parent / "graphviz-pure"
    if here.is_file():
        return str(here)
    return shutil.which("graphviz-pure")


def render_path_diagram(
    params: pd.DataFrame,
    path: str | os.PathLike,
    **options,
) -> Path:
    """Write the path diagram to ``path`` (``.svg`` or ``.png``) and return it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in {"svg", "png"}:
        raise ValueError(f"path diagram must be .svg or .png, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    dot = path_diagram_dot(params, **options)
    binary = _dot_binary()
    with tempfile.TemporaryDirectory(prefix="resilience-diagram-") as tmp:
        source, produced = Path(tmp) / "model.dot", Path(tmp) / f"model.{fmt}"
        source.write_text(dot, encoding="utf-8")
        if binary is not None:
            proc = subprocess.run(
                [binary, f"-T{fmt}", str(source), "-o", str(produced)], capture_output=True, text=True, timeout=120
            )
            if proc.returncode == 0 and produced.is_file() and produced.stat().st_size > 0:
                return place_file(produced, path)
        _draw_with_matplotlib(params, produced, **options)
        return place_file(produced, path)


def _node_text(node: str, labels: dict[str, str] | None) -> str:
    """A node's label wrapped to short lines (it must fit its ellipse), else its code."""
    import textwrap

    text = (labels or {}).get(node)
    return "\n".join(textwrap.wrap(text, 16)) if text else node


def _draw_with_matplotlib(params, path, *, group=1, std="std.all", measurement=False, title=None, alpha=0.05,
                          labels=None):
    """A layered left-to-right drawing: each node one column right of its furthest cause."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse, FancyArrowPatch, Rectangle

    paths, covs = _structural_rows(params, group, measurement)
    latents = set(params.loc[params["op"] == "=~", "lhs"])
    edges = [((r["rhs"], r["lhs"]) if r["op"] == "~" else (r["lhs"], r["rhs"]), r) for _, r in paths.iterrows()]
    nodes = sorted({n for (a, b), _ in edges for n in (a, b)} | set(covs["lhs"]) | set(covs["rhs"]))
    layer = {n: 0 for n in nodes}
    for _ in nodes:  # longest-path layering; the structural part is acyclic
        for (a, b), _r in edges:
            layer[b] = max(layer[b], layer[a] + 1)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(layer[n], []).append(n)
    pos = {n: (3.0 * k, -1.2 * i) for k, col in columns.items() for i, n in enumerate(col)}
    fig, ax = plt.subplots(figsize=(2.6 * (len(columns) + 1), 1.1 * (max(map(len, columns.values())) + 1)))
    for n, (x, y) in pos.items():
        w, h = (2.2, 0.95) if labels else (1.6, 0.7)  # room for a wrapped label
        patch = Ellipse((x, y), w, h, fill=False) if n in latents else Rectangle((x - w / 2, y - h / 2), w, h, fill=False)
        ax.add_patch(patch)
        ax.text(x, y, _node_text(n, labels), ha="center", va="center", fontsize=8 if labels else 9)
    for (a, b), r in edges:
        p = r.get("pvalue", np.nan)
        sig = p is not None and np.isfinite(p) and p < alpha
        arrow = FancyArrowPatch(pos[a], pos[b], arrowstyle="-|>", mutation_scale=12, shrinkA=22, shrinkB=22,
                                linestyle="-" if sig else "--")
        ax.add_patch(arrow)
        mx, my = (pos[a][0] + pos[b][0]) / 2, (pos[a][1] + pos[b][1]) / 2
        ax.text(mx, my + 0.1, _label(r, std), fontsize=8, ha="center")
    for _, r in covs.iterrows():
        a, b = r["lhs"], r["rhs"]
        ax.add_patch(FancyArrowPatch(pos[a], pos[b], arrowstyle="<|-|>", mutation_scale=10, shrinkA=22, shrinkB=22,
                                     connectionstyle="arc3,rad=0.4", linestyle=":"))
        ax.text((pos[a][0] + pos[b][0]) / 2 - 0.5, (pos[a][1] + pos[b][1]) / 2, _label(r, std), fontsize=8, ha="right")
    xs, ys = zip(*pos.values()) if pos else ((0,), (0,))
    ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.savefig(path, format=Path(path).suffix.lstrip("."), bbox_inches="tight")
    plt.close(fig)
