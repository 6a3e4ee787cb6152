"""Turn raw answers into analysis-ready data, driven only by the instrument.

Three steps, each vectorised over respondents:

1. **missing codes to NA**: every code in a scale's ``missing`` list
   (e.g. -9 "Prefer not to say", -8 "Don't know") becomes NA;
2. **reverse-keying**: an item marked ``reverse`` is recoded ``max + min - x``
   using its scale's lowest and highest substantive codes (1..5 -> 5..1);
3. **scale scores** per construct: the mean (or sum, prorated, or count) of its
   items when at least ``min_items`` are answered, else NA. ``min_items``
   comes from the construct; when the instrument leaves it unset, all items
   but one are needed (a common rule, e.g. in the ESS and PROMIS scoring manuals).

Grouping items with a ``collapsed`` version (census ethnic group -> five
groups) also get that analysis column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ScoreResult", "clean_items", "score", "score_columns"]

_KEEP_META = ("respondent_id", "event", "form_version", "language", "submitted_at", "duration_s")


def clean_items(data: pd.DataFrame, instrument, *, reverse: bool = True) -> pd.DataFrame:
    """Item columns with missing codes as NA and (by default) reverse-keyed items recoded."""
    out = {}
    for it in instrument.items:
        if it.id not in data:
            continue
        scale = instrument.scales[it.scale]
        col = data[it.id]
        if scale.type in ("text", "date"):
            out[it.id] = col
            continue
        vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan).copy()
        if scale.missing_codes:
            vals[np.isin(vals, scale.missing_codes)] = np.nan
        if scale.is_categorical:
            # codes outside the scale cannot be scored (validation reports them)
            vals[~np.isin(vals, scale.codes) & ~np.isnan(vals)] = np.nan
        if reverse and it.reverse and scale.codes:
            lo, hi = min(scale.codes), max(scale.codes)
            vals = hi + lo - vals
        out[it.id] = vals
    return pd.DataFrame(out, index=data.index)


def _min_items(construct, n_items: int, override: int | dict | None) -> int:
    if isinstance(override, dict):
        override = override.get(construct.id)
    if override is not None:
        return int(override)
    if construct.min_items is not None:
        return int(construct.min_items)
    return max(1, n_items - 1)


def score_columns(clean: pd.DataFrame, instrument, *, min_items: int | dict | None = None) -> pd.DataFrame:
    """One column per construct (named by its id) from cleaned items."""
    scores = {}
    for c in instrument.constructs:
        ids = [it.id for it in instrument.items_of(c.id) if it.id in clean]
        if not ids:
            continue
        block = clean[ids].to_numpy(dtype="float64")
        answered = (~np.isnan(block)).sum(axis=1)
        need = _min_items(c, len(ids), min_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(block, axis=1) / answered  # NaN where nothing answered
        if c.score == "count":
            value = np.isin(block, c.count_codes or [1]).sum(axis=1).astype("float64")
        elif c.score == "sum":  # prorated: the mean of the answered items times their number
            value = mean * len(ids)
        else:
            value = mean
        value = np.where(answered >= need, value, np.nan)
        scores[c.id] = value
    return pd.DataFrame(scores, index=clean.index)


@dataclass
class ScoreResult:
    """Scored responses: meta columns, cleaned items, collapsed groups, construct scores."""

    table: pd.DataFrame
    items: list[str]
    constructs: list[str]
    min_items: dict[str, int] = field(default_factory=dict)
    n_answered: pd.DataFrame | None = None

    @property
    def scores(self) -> pd.DataFrame:
        return self.table[[c for c in self.constructs]]

    def summary(self) -> pd.DataFrame:
        """Per construct: n scored, mean, sd, min items rule."""
        rows = []
        for c in self.constructs:
            s = self.table[c]
            rows.append({"construct": c, "n_scored": int(s.notna().sum()), "n_missing": int(s.isna().sum()),
                         "mean": s.mean(), "sd": s.std(), "min_items": self.min_items.get(c)})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": len(self.table), "constructs": self.constructs, "min_items": self.min_items,
                "summary": self.summary().to_dict("records")}

    def __repr__(self) -> str:
        return f"<ScoreResult {len(self.table)} respondents, {len(self.constructs)} scores>"

    def _repr_html_(self) -> str:
        return self.summary().to_html(index=False, float_format=lambda v: f"{v:.3f}")


def score(data, instrument, *, min_items: int | dict | None = None, reverse: bool = True) -> ScoreResult:
    """Score responses (a DataFrame in the suite's shape, or an ImportResult)."""
    data = getattr(data, "data", data)
    clean = clean_items(data, instrument, reverse=reverse)
    scores = score_columns(clean, instrument, min_items=min_items)
    meta = data[[c for c in _KEEP_META if c in data]]
    collapsed = {}
    for it in instrument.items:
        if it.collapsed is not None and it.id in clean:
            mapping = it.collapsed.mapping()
            collapsed[it.collapsed.id] = pd.Series(clean[it.id]).map(mapping).astype("float64")
    parts = [meta, clean, pd.DataFrame(collapsed, index=data.index), scores]
    table = pd.concat(parts, axis=1)
    rules = {}
    for c in instrument.constructs:
        ids = [it.id for it in instrument.items_of(c.id) if it.id in clean]
        if ids:
            rules[c.id] = _min_items(c, len(ids), min_items)
    return ScoreResult(table=table, items=list(clean.columns), constructs=list(scores.columns), min_items=rules)
