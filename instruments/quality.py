"""Careless-responding indices and flags. Nothing is ever deleted.

Each index is computed for every respondent from the substantive items (role
``item``, missing codes as NA) and turned into a flag with a default from the
literature; the thresholds are arguments. The result keeps every respondent
and adds columns; what to do with flagged respondents is the analyst's call.

================ ======================================================= =========================
flag             index                                                   default rule
================ ======================================================= =========================
longstring       longest run of identical consecutive answers            >= half the items
                 (Johnson 2005; Curran 2016)
irv              intra-individual response variability: SD of a          < 0.5 (near-straightlining;
                 respondent's answers (Dunn et al. 2018)                 no consensus cut-off)
mahalanobis      squared Mahalanobis distance over the answered items     p < .001 (chi-square,
                 (pairwise covariances; Meade & Craig 2012)              df = items answered)
evenodd          even-odd consistency: correlation over constructs of    < .30 (Jackson 1977;
                 odd- and even-item half means, Spearman-Brown            Johnson 2005)
                 corrected (reverse-keyed items recoded first)
psychsyn         psychometric synonyms: within-person correlation over   < 0 (Meade & Craig 2012)
                 item pairs correlating > .60 in the sample
speeder          seconds per answered item (``duration_s``)              < 2 s (Huang et al. 2012)
attention        an instructed-response item answered otherwise          any failure
duplicate        repeated respondent id or identical answer vector       any
================ ======================================================= =========================

An index that cannot be computed for a respondent (too few answers, no
timings) is NA and never flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from instruments.score import clean_items

__all__ = [
    "longstring",
    "irv",
    "mahalanobis",
    "evenodd",
    "psychsyn",
    "QualityResult",
    "quality_flags",
    "DEFAULTS",
]

DEFAULTS: dict[str, float] = {
    "longstring_fraction": 0.5,
    "irv_min": 0.5,
    "mahalanobis_alpha": 0.001,
    "evenodd_min": 0.30,
    "psychsyn_critval": 0.60,
    "psychsyn_min": 0.0,
    "seconds_per_item": 2.0,
}


def longstring(block: np.ndarray) -> np.ndarray:
    """Longest run of identical consecutive answers per row (NA breaks a run)."""
    n, k = block.shape
    if k == 0:
        return np.full(n, np.nan)
    run = (~np.isnan(block[:, 0])).astype(float)
    best = run.copy()
    for j in range(1, k):  # a loop over items, vectorised over respondents
        same = block[:, j] == block[:, j - 1]
        run = np.where(same, run + 1, (~np.isnan(block[:, j])).astype(float))
        best = np.maximum(best, run)
    best[np.isnan(block).all(axis=1)] = np.nan
    return best


def irv(block: np.ndarray) -> np.ndarray:
    """Standard deviation (n - 1) of each row's answers; NA with fewer than 2 answers."""
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        out = np.nanstd(block, axis=1, ddof=1) if block.shape[1] > 1 else np.full(len(block), np.nan)
    out[(~np.isnan(block)).sum(axis=1) < 2] = np.nan
    return out


def mahalanobis(block: np.ndarray, min_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(D², p) per row; rows with missing answers use the items they answered.

    Means and covariances are pairwise-complete; a row's distance uses the
    sub-matrix of its answered items and its p value a chi-square with that many
    degrees of freedom. Rows answering fewer than ``min_fraction`` of the items
    are NA. With complete data this is the textbook distance (df = k).
    """
    n = block.shape[0]
    d2 = np.full(n, np.nan)
    df = np.zeros(n)
    # items nobody (or too few) answered, or answered all alike, carry no distance
    with _quiet():
        usable = ((~np.isnan(block)).sum(axis=0) > 2) & (np.nanstd(block, axis=0) > 0)
    block = block[:, usable]
    k = block.shape[1]
    observed = ~np.isnan(block)
    if k == 0:
        return d2, np.full(n, np.nan)
    mean = np.nanmean(block, axis=0)
    cov = pd.DataFrame(block).cov(min_periods=3).to_numpy()
    if np.isnan(cov).any():
        return d2, np.full(n, np.nan)
    centred = np.where(observed, block - mean, 0.0)
    eligible = observed.sum(axis=1) >= max(2, int(np.ceil(min_fraction * k)))
    try:
        np.linalg.cholesky(cov)  # positive definite: every sub-matrix is invertible
        precision = np.linalg.inv(cov)
    except np.linalg.LinAlgError:  # pairwise covariances need not be: one pseudo-inverse per pattern
        precision = None
    if precision is not None:
        d2, df = _mahalanobis_schur(centred, observed, eligible, precision)
        p = np.where(np.isnan(d2), np.nan, stats.chi2.sf(d2, np.maximum(df, 1)))
        return d2, p
    patterns, inverse = np.unique(observed[eligible], axis=0, return_inverse=True)
    rows = np.flatnonzero(eligible)
    for p_idx, pattern in enumerate(patterns):  # one inverse per missingness pattern
        members = rows[inverse.ravel() == p_idx]
        sub = np.linalg.pinv(cov[np.ix_(pattern, pattern)])
        x = centred[np.ix_(members, pattern)]
        d2[members] = np.einsum("ij,jk,ik->i", x, sub, x)
        df[members] = pattern.sum()
    p = np.where(np.isnan(d2), np.nan, stats.chi2.sf(d2, np.maximum(df, 1)))
    return d2, p


def _mahalanobis_schur(centred, observed, eligible, precision, chunk: int = 100_000):
    """x_O' inv(S_OO) x_O for every row, without inverting S_OO row by row.

    With P = inv(S) and M the row's missing items, inv(S_OO) = P_OO - P_OM inv(P_MM) P_MO
    (Schur complement), so D² = x'Px - y_M' inv(P_MM) y_M with y = Px and x_M = 0. Rows
    are handled in batches by their number of missing items: a few small solves
    instead of one k x k inverse per missingness pattern (with random gaps nearly
    every respondent has a pattern of their own).
    """
    n, k = centred.shape
    d2 = np.full(n, np.nan)
    df = np.zeros(n)
    rows = np.flatnonzero(eligible)
    n_missing = k - observed.sum(axis=1)
    for start in range(0, len(rows), chunk):
        idx = rows[start:start + chunk]
        x = centred[idx]
        y = x @ precision
        out = np.einsum("ij,ij->i", x, y)
        m_of = n_missing[idx]
        for m in np.unique(m_of):
            if m == 0:
                continue
            sel = np.flatnonzero(m_of == m)
            miss = np.nonzero(~observed[idx[sel]])[1].reshape(len(sel), m)  # row-major: per row
            p_mm = precision[miss[:, :, None], miss[:, None, :]]
            y_m = np.take_along_axis(y[sel], miss, axis=1)
            out[sel] -= np.einsum("ij,ij->i", y_m, np.linalg.solve(p_mm, y_m[..., None])[..., 0])
        d2[idx] = out
        df[idx] = k - m_of
    return d2, df


def _rowwise_corr(a: np.ndarray, b: np.ndarray, min_pairs: int = 3) -> np.ndarray:
    """Pearson correlation of a[i] with b[i] over columns answered in both."""
    ok = ~np.isnan(a) & ~np.isnan(b)
    m = ok.sum(axis=1)
    a0 = np.where(ok, a, 0.0)
    b0 = np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = a0.sum(axis=1) / m
        mb = b0.sum(axis=1) / m
        da = np.where(ok, a - ma[:, None], 0.0)
        db = np.where(ok, b - mb[:, None], 0.0)
        r = (da * db).sum(axis=1) / np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
    r[m < min_pairs] = np.nan
    return r


EVENODD_MIN_CONSTRUCTS = 6


def evenodd(clean: pd.DataFrame, instrument) -> np.ndarray:
    """Even-odd consistency, Spearman-Brown corrected (items reverse-keyed first)."""
    odd, even = [], []
    for c in instrument.latent_constructs:
        ids = [it.id for it in instrument.items_of(c.id) if it.role == "item" and it.id in clean]
        if len(ids) < 2:
            continue
        with np.errstate(invalid="ignore"), _quiet():
            odd.append(np.nanmean(clean[ids[0::2]].to_numpy(dtype=float), axis=1))
            even.append(np.nanmean(clean[ids[1::2]].to_numpy(dtype=float), axis=1))
    # a correlation over fewer than EVENODD_MIN_CONSTRUCTS pairs of half-scores is mostly noise:
    # with four 3-item scales it marks about a quarter of attentive respondents
    if len(odd) < EVENODD_MIN_CONSTRUCTS:
        return np.full(len(clean), np.nan)
    r = _rowwise_corr(np.column_stack(odd), np.column_stack(even))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * r / (1 + r)


def psychsyn(clean: pd.DataFrame, critval: float = 0.60) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Within-person correlation over item pairs whose sample correlation exceeds ``critval``."""
    corr = clean.corr(min_periods=3).to_numpy()
    cols = list(clean.columns)
    pairs = [(cols[i], cols[j]) for i in range(len(cols)) for j in range(i + 1, len(cols))
             if corr[i, j] > critval]
    if len(pairs) < 3:
        return np.full(len(clean), np.nan), pairs
    a = clean[[p[0] for p in pairs]].to_numpy(dtype=float)
    b = clean[[p[1] for p in pairs]].to_numpy(dtype=float)
    return _rowwise_corr(a, b), pairs


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


@dataclass
class QualityResult:
    """Indices and flags per respondent, and how many each flag catches."""

    table: pd.DataFrame
    rules: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> pd.DataFrame:
        return self.table[[f"flag_{k}" for k in self.rules]]

    @property
    def n_flags(self) -> pd.Series:
        return self.table["n_flags"]

    def summary(self) -> pd.DataFrame:
        """One row per flag: rule, respondents evaluable, flagged, percent of all."""
        n = len(self.table)
        rows = []
        for key, rule in self.rules.items():
            flag = self.table[f"flag_{key}"]
            index = self.table.get(key)
            evaluable = int(index.notna().sum()) if index is not None else n
            rows.append({"flag": key, "rule": rule, "n_evaluable": evaluable,
                         "n_flagged": int(flag.sum()), "pct_flagged": 100 * flag.sum() / n if n else np.nan,
                         "note": self.notes.get(key, "")})
        rows.append({"flag": "any", "rule": "at least one flag", "n_evaluable": n,
                     "n_flagged": int((self.table["n_flags"] > 0).sum()),
                     "pct_flagged": 100 * (self.table["n_flags"] > 0).sum() / n if n else np.nan, "note": ""})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        import json

        return {"n_rows": len(self.table), "summary": json.loads(self.summary().to_json(orient="records")),
                "rules": self.rules, "notes": self.notes}

    def __repr__(self) -> str:
        return f"<QualityResult {len(self.table)} respondents, {int((self.table['n_flags'] > 0).sum())} flagged>"

    def _repr_html_(self) -> str:
        return self.summary().to_html(index=False, float_format=lambda v: f"{v:.1f}")


def quality_flags(data, instrument, **thresholds) -> QualityResult:
    """Compute every index and flag (see the module table for the defaults)."""
    unknown = set(thresholds) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    t = {**DEFAULTS, **thresholds}
    data = getattr(data, "data", data)
    item_ids = [it.id for it in instrument.items
                if it.role == "item" and instrument.scales[it.scale].type == "ordinal" and it.id in data]
    raw = clean_items(data[item_ids], instrument, reverse=False) if item_ids else pd.DataFrame(index=data.index)
    keyed = clean_items(data[item_ids], instrument, reverse=True) if item_ids else raw
    block = raw.to_numpy(dtype=float) if item_ids else np.empty((len(data), 0))
    k = block.shape[1]
    out = pd.DataFrame(index=data.index)
    if "respondent_id" in data:
        out["respondent_id"] = data["respondent_id"]
    notes: dict[str, str] = {}
    rules: dict[str, str] = {}

    long_cut = int(np.ceil(t["longstring_fraction"] * k)) if k else np.inf
    out["longstring"] = longstring(block)
    out["flag_longstring"] = out["longstring"] >= long_cut
    rules["longstring"] = f"longest run >= {long_cut} of {k} items"

    out["irv"] = irv(block)
    out["flag_irv"] = out["irv"] < t["irv_min"]
    rules["irv"] = f"IRV < {t['irv_min']}"

    d2, p = mahalanobis(block)
    out["mahalanobis"] = d2
    out["mahalanobis_p"] = p
    out["flag_mahalanobis"] = out["mahalanobis_p"] < t["mahalanobis_alpha"]
    rules["mahalanobis"] = f"p < {t['mahalanobis_alpha']} (chi-square, df = items answered of {k})"

    out["evenodd"] = evenodd(keyed, instrument)
    out["flag_evenodd"] = out["evenodd"] < t["evenodd_min"]
    rules["evenodd"] = f"Spearman-Brown even-odd r < {t['evenodd_min']}"
    n_halves = sum(1 for c in instrument.latent_constructs
                   if sum(it.role == "item" and it.id in keyed for it in instrument.items_of(c.id)) >= 2)
    # the index correlates construct halves: with few short scales it is noisy, and
    # attentive respondents fall below the cut-off too (on simulated crs data, ~12%)
    notes["evenodd"] = (f"over {n_halves} constructs; few short scales make it noisy: a hint, not a verdict"
                        if n_halves >= EVENODD_MIN_CONSTRUCTS else
                        f"{n_halves} constructs: too few (fewer than {EVENODD_MIN_CONSTRUCTS}) for a "
                        "within-person correlation")

    ps, pairs = psychsyn(keyed, t["psychsyn_critval"])
    out["psychsyn"] = ps
    out["flag_psychsyn"] = out["psychsyn"] < t["psychsyn_min"]
    rules["psychsyn"] = f"within-person r < {t['psychsyn_min']} over item pairs with r > {t['psychsyn_critval']}"
    notes["psychsyn"] = f"{len(pairs)} item pairs" + ("" if len(pairs) >= 3 else " (fewer than 3: not computed)")

    answered = data[[it.id for it in instrument.items if it.id in data]].notna().sum(axis=1).to_numpy()
    if "duration_s" in data and data["duration_s"].notna().any():
        with np.errstate(invalid="ignore", divide="ignore"):
            spi = pd.to_numeric(data["duration_s"], errors="coerce").to_numpy(dtype=float) / np.where(answered > 0, answered, np.nan)
        out["seconds_per_item"] = spi
        out["flag_speeder"] = out["seconds_per_item"] < t["seconds_per_item"]
    else:
        out["seconds_per_item"] = np.nan
        out["flag_speeder"] = False
        notes["speeder"] = "no timings (duration_s) in the data"
    rules["speeder"] = f"< {t['seconds_per_item']:g} s per answered item"

    checks = [it for it in instrument.attention_checks if it.id in data and it.expected is not None]
    if checks:
        failed = np.zeros(len(data), dtype=int)
        for it in checks:
            v = pd.to_numeric(data[it.id], errors="coerce").to_numpy(dtype=float)
            failed += (~np.isnan(v) & (v != it.expected)).astype(int)
        out["attention_failed"] = failed
        out["flag_attention"] = failed > 0
    else:
        out["attention_failed"] = np.nan
        out["flag_attention"] = False
        notes["attention"] = "no attention-check items in the data"
    rules["attention"] = "any instructed-response item answered otherwise"

    dup = np.zeros(len(data), dtype=bool)
    # a longitudinal export (REDCap events) has each respondent once per event
    event = data["event"].astype("string").fillna("").to_numpy() if "event" in data else None
    if "respondent_id" in data:
        key = ["respondent_id", "event"] if event is not None else ["respondent_id"]
        dup |= data.duplicated(subset=key, keep=False).to_numpy()
    if k:
        enough = (~np.isnan(block)).sum(axis=1) >= max(1, k // 2)
        answers = pd.DataFrame(block)
        if event is not None:
            answers["__event"] = event
        same = answers.duplicated(keep=False).to_numpy()  # NaN matches NaN here
        dup |= same & enough
    out["duplicate"] = dup.astype(int)
    out["flag_duplicate"] = dup
    rules["duplicate"] = "repeated respondent id or identical answers to all items"

    flag_cols = [f"flag_{key}" for key in rules]
    for c in flag_cols:
        out[c] = out[c].fillna(False).astype(bool)
    out["n_flags"] = out[flag_cols].sum(axis=1)
    return QualityResult(out, rules, notes)
