"""Turn raw answers into analysis-ready data, driven only by the instrument.

Three steps, each vectorised over respondents:

1. **missing codes to NA**: every code in a scale's ``missing`` list
   (e.g. -9 "Prefer not to say", -8 "Don't know") becomes NA;
2. **reverse-keying**: an item marked ``reverse`` has the i-th smallest of its
   scale's substantive codes mapped to the i-th largest (1..5 -> 5..1; on codes
   1, 2, 3, 5 the 2 becomes 3, not ``max + min - 2 = 4``, which is no code);
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

__all__ = ["ScoreResult", "clean_items", "reverse_codes", "score", "score_columns"]

_KEEP_META = ("respondent_id", "event", "form_version", "language", "submitted_at", "duration_s")


def reverse_codes(codes) -> dict[float, float]:
    """Reverse-keying as a map: the i-th smallest code to the i-th largest (1, 2, 3, 5 -> 5, 3, 2, 1)."""
    ordered = sorted(float(c) for c in codes)
    return dict(zip(ordered, ordered[::-1]))


def clean_items(data: pd.DataFrame, instrument, items=None, *, reverse: bool = True) -> pd.DataFrame:
    """Item columns with missing codes as NA and (by default) reverse-keyed items recoded.

    ``items`` (default: every item of the instrument that ``data`` has) must be
    columns of ``data``. Missing codes go first: "prefer not to say" = 9 must
    not be reversed into a number. Codes outside a categorical scale become NA
    (validation reports them). The one recoding of the suite: scoring, quality
    flags, reliability and invariance all use it.
    """
    if items is None:
        items = [it.id for it in instrument.items if it.id in data]
    absent = [i for i in items if i not in data]
    if absent:
        raise KeyError(f"the data lack item column(s): {', '.join(absent)}")
    keyed = {it.id for it in instrument.reverse_keyed_items}
    out = {}
    for item_id in items:
        it = instrument.item(item_id)
        scale = instrument.scales[it.scale]
        col = data[item_id]
        if scale.type in ("text", "date"):
            out[item_id] = col
            continue
        vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan).copy()
        if scale.missing_codes:
            vals[np.isin(vals, scale.missing_codes)] = np.nan
        if scale.codes:
            vals[~np.isin(vals, scale.codes) & ~np.isnan(vals)] = np.nan
            if reverse and item_id in keyed:
                vals = pd.Series(vals).map(reverse_codes(scale.codes)).to_numpy(dtype="float64")
        out[item_id] = vals
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
