"""Path diagrams from a ParameterTable, with graphviz-pure and the matplotlib fallback."""

import numpy as np
import pandas as pd
import pytest

from analysis.study import diagram
from analysis.study.diagram import path_diagram_dot, render_path_diagram, significance_stars


def _table():
    rows = [
        ("CULT", "=~", "CULT1", 1.0, np.nan, 0.8),
        ("TRUST", "=~", "TRUST1", 1.0, np.nan, 0.7),
        ("NAVIG", "=~", "NAVIG1", 1.0, np.nan, 0.75),
        ("TRUST", "~", "CULT", 0.41, 0.0001, 0.352),
        ("TRUST", "~", "REPR", 0.02, 0.30, 0.048),
        ("NAVIG", "~", "TRUST", 0.30, 0.004, 0.281),
        ("CULT", "~~", "REPR", 0.10, 0.03, 0.12),
        ("TRUST", "~~", "TRUST", 0.5, 0.0, 0.6),
    ]
    df = pd.DataFrame(rows, columns=["lhs", "op", "rhs", "est", "pvalue", "std.all"])
    df["group"] = 1
    return df


def test_stars_follow_conventional_cutoffs():
    assert [significance_stars(p) for p in (0.0004, 0.004, 0.04, 0.4, np.nan)] == ["***", "**", "*", "", ""]


def test_dot_has_shapes_labels_and_dashed_nonsignificant_paths():
    dot = path_diagram_dot(_table(), title="Figure 1")
    assert '"CULT" [shape=ellipse]' in dot and '"REPR" [shape=box]' in dot
    assert '"CULT" -> "TRUST" [label="0.35***", style=solid]' in dot
    assert '"REPR" -> "TRUST" [label="0.05", style=dashed]' in dot
    assert '"TRUST" -> "NAVIG" [label="0.28**", style=solid]' in dot
    assert 'dir=both' in dot and 'label="0.12*"' in dot  # exogenous covariance
    assert "CULT1" not in dot  # structural part only by default
    assert "CULT1" in path_diagram_dot(_table(), measurement=True)


def test_svg_rendered_by_graphviz_pure(tmp_path):
    out = render_path_diagram(_table(), tmp_path / "fig.svg")
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "0.35***" in svg


def test_matplotlib_fallback_when_no_dot_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(diagram, "_dot_binary", lambda: None)
    out = render_path_diagram(_table(), tmp_path / "fig.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="svg or .png"):
        render_path_diagram(_table(), tmp_path / "fig.gif")
