"""Statistical disclosure control for everything a report shows.

Community surveys reach small groups; a table cell of three Somali-speaking
women over 65 in one ward identifies people. Two layers:

* **small groups, before any analysis** (:func:`small_groups_plan`,
  :func:`apply_small_groups`): a category of a grouping or described variable
  with fewer than ``k`` respondents is merged into a named residual category
  (joined by the next smallest ones until it holds ``k``), or its respondents
  are dropped from everything, totals included. Suppressing such a group in
  one table is not enough: its size and statistics follow by subtracting the
  other groups from any published total (a one-way table, ``ntotal`` of a
  multi-group fit, overall item means), so no published figure may describe it;
* **cells of crosstabs** (:func:`suppress_counts`): no count is shown for a
  cell of fewer than ``threshold`` respondents (primary suppression), and where
  a row or column total would let a reader work a suppressed cell out, the next
  smallest cell in that line is suppressed too (complementary suppression),
  until every line with a suppressed cell has at least two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_THRESHOLD", "SUPPRESSED", "MISSING", "RESIDUAL", "SuppressedTable", "suppress_counts",
           "suppress_by_n", "small_groups_plan", "apply_small_groups", "category_sizes"]

DEFAULT_THRESHOLD = 10
SUPPRESSED = "[s]"
MISSING = "(missing)"   # an unanswered category is a category like any other: it can be small
RESIDUAL = "Other (merged)"


def small_groups_plan(labels: pd.Series, *, k: int = DEFAULT_THRESHOLD) -> list[str]:
    """Categories (``MISSING`` for no answer) to merge so that every category has ``k`` respondents or none.

    The categories under ``k`` are merged; while they hold fewer than ``k``
    together, the next smallest category joins them (a residual of 3 would be
    as revealing as the 3 themselves). Empty when nothing is small.

    >>> small_groups_plan(pd.Series(["W"] * 600 + ["A"] * 400 + ["M"] * 197 + ["O"] * 3), k=10)
    ['O', 'M']
    """
    sizes = _as_labels(labels).value_counts()
    ordered = sorted(sizes.items(), key=lambda kv: (kv[1], kv[0]))
    merged = [cat for cat, n in ordered if n < k]
    if not merged:
        return []
    total = sum(sizes[c] for c in merged)
    for cat, n in ordered[len(merged):]:
        if total >= k:
            break
        merged.append(cat)
        total += n
    return merged


def category_sizes(values: pd.Series) -> pd.Series:
    """Respondents per category, named as the small-groups rule names them (``MISSING`` for no answer)."""
    return _as_labels(values).value_counts()


def _as_labels(values: pd.Series) -> pd.Series:
    """Category labels as text, ``MISSING`` for no answer; a code read as 3.0 is the category 3."""
    def label(v):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return MISSING
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return values.astype(object).map(label)


def apply_small_groups(frame: pd.DataFrame, columns: list[str], *, k: int = DEFAULT_THRESHOLD,
                       rule: str = "merge", residual: str = RESIDUAL) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Apply the study-wide small-groups rule to labelled categorical ``columns`` of ``frame``.

    ``merge`` relabels the small categories ``residual`` (no answer included:
    its respondents then belong to a group); ``drop`` removes the rows of every
    small category, and repeats until no column has one (dropping rows for one
    column can make a category of another small). Returns the frame and, per
    column, the categories merged or dropped (names only: their sizes are what
    must not be published).
    """
    if rule not in ("merge", "drop"):
        raise ValueError(f"The 'rule' parameter of apply_small_groups must be 'merge' or 'drop'. Got {rule!r} instead.")
    out = frame.copy()
    handled: dict[str, list[str]] = {c: [] for c in columns}
    while True:
        changed = False
        for col in columns:
            labels = _as_labels(out[col])
            plan = small_groups_plan(out[col], k=k) if rule == "merge" else \
                [c for c, n in labels.value_counts().items() if n < k]
            if not plan:
                continue
            hit = labels.isin(plan).to_numpy()
            handled[col] += [c for c in plan if c not in handled[col]]
            if rule == "merge":
                merged = labels.where(~hit, residual)
                out[col] = merged.where(merged != MISSING, None)
            else:
                out = out[~hit]
                changed = True
        if not changed:
            break
    return out, {c: sorted(v) for c, v in handled.items() if v}


@dataclass(frozen=True)
class SuppressedTable:
    """A count table after suppression: ``values`` with NaN where hidden, ``mask`` True where hidden."""

    values: pd.DataFrame
    mask: pd.DataFrame
    primary: pd.DataFrame  # cells hidden because they are small
    threshold: int
    # The original counts, kept so totals stay right; never shown cell by cell.
    original: pd.DataFrame = field(repr=False, default=None)  # type: ignore[assignment]
    # Lines whose only hidden cell could not be protected by another: their totals are withheld.
    withheld_rows: tuple = ()
    withheld_cols: tuple = ()

    @property
    def n_suppressed(self) -> int:
        return int(self.mask.to_numpy().sum())

    def formatted(self, *, marker: str = SUPPRESSED, totals: bool = True) -> pd.DataFrame:
        """Strings for people: suppressed cells show ``marker``; totals are safe to show."""
        out = self.values.astype(object).where(~self.mask, marker)
        out = out.map(lambda v: v if isinstance(v, str) else f"{int(v):d}")
        if totals:
            raw = self.original
            out["Total"] = [
                SUPPRESSED if row in self.withheld_rows else _safe_total(v, self.threshold)
                for row, v in raw.sum(axis=1).items()
            ]
            col_totals = [
                SUPPRESSED if col in self.withheld_cols else _safe_total(v, self.threshold)
                for col, v in raw.sum(axis=0).items()
            ]
            out.loc["Total"] = col_totals + [_safe_total(raw.to_numpy().sum(), self.threshold)]
        return out


def _safe_total(value: float, threshold: int) -> str:
    return SUPPRESSED if 0 < value < threshold else f"{int(value):d}"


def suppress_counts(counts: pd.DataFrame, *, threshold: int = DEFAULT_THRESHOLD) -> SuppressedTable:
    """Primary and complementary suppression of a two-way table of counts.

    Zero cells are not sensitive (an empty cell reveals no one) and are not
    hidden, but they cannot protect a suppressed neighbour either, so the
    complementary cell is the smallest *non-zero* unsuppressed cell of the line.
    """
    if threshold < 1:
        raise ValueError(f"The 'threshold' parameter of suppress_counts must be an int >= 1. Got {threshold!r} instead.")
    values = counts.astype(float)
    if (values < 0).to_numpy().any():
        raise ValueError("counts must be non-negative")
    v = values.to_numpy()
    primary = (v > 0) & (v < threshold)
    mask = primary.copy()
    unprotectable: set[tuple[int, int]] = set()  # (axis, line) with no cell left to hide
    while True:
        rows = [r for r in np.where(mask.sum(axis=1) == 1)[0] if (1, r) not in unprotectable]
        cols = [c for c in np.where(mask.sum(axis=0) == 1)[0] if (0, c) not in unprotectable]
        if not rows and not cols:
            break
        open_cells = ~mask & (v > 0)
        # A cell at the crossing of an exposed row and an exposed column protects both at once.
        both = [(v[r, c], r, c) for r in rows for c in cols if open_cells[r, c]]
        if both:
            _, r, c = min(both)
            mask[r, c] = True
            continue
        # Otherwise hide the smallest cell that protects some exposed line.
        options = [(v[r, c], r, c) for r in rows for c in np.where(open_cells[r])[0]]
        options += [(v[r, c], r, c) for c in cols for r in np.where(open_cells[:, c])[0]]
        if not options:
            unprotectable |= {(1, r) for r in rows} | {(0, c) for c in cols}
            continue
        _, r, c = min(options)
        mask[r, c] = True
    mask_df = pd.DataFrame(mask, index=counts.index, columns=counts.columns)
    table = SuppressedTable(
        values=values.where(~mask_df),
        mask=mask_df,
        primary=pd.DataFrame(primary, index=counts.index, columns=counts.columns),
        threshold=threshold,
        original=values,
        withheld_rows=tuple(counts.index[r] for axis, r in unprotectable if axis == 1),
        withheld_cols=tuple(counts.columns[c] for axis, c in unprotectable if axis == 0),
    )
    return table


def suppress_by_n(
    stats: pd.DataFrame, n: pd.Series | str, *, threshold: int = DEFAULT_THRESHOLD, columns: list[str] | None = None
) -> pd.DataFrame:
    """Hide statistics (means, loadings, paths …) of rows whose group size is below ``threshold``.

    ``n`` is a column name of ``stats`` or a Series aligned with it. The
    statistics become NaN and a ``suppressed`` column says which rows were hidden.
    """
    sizes = stats[n] if isinstance(n, str) else n.reindex(stats.index)
    small = sizes.fillna(0) < threshold
    out = stats.copy()
    cols = columns or [c for c in out.columns if c != n and pd.api.types.is_numeric_dtype(out[c])]
    out[cols] = out[cols].astype(float)
    out.loc[small, cols] = np.nan
    if isinstance(n, str):
        out.loc[small, n] = np.nan
    out["suppressed"] = small.to_numpy()
    return out
