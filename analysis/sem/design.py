"""A complex survey design, declared once: weights, clusters (PSUs), strata, fpc.

``Design(weights="w", cluster="psu", strata="stratum")`` names the columns;
``design.resolve(data)`` checks them against a DataFrame and returns a
:class:`ResolvedDesign` (arrays, one entry per row) whose
:meth:`~ResolvedDesign.total_variance` is the Taylor-linearisation variance of
a total, as R survey's ``svyrecvar`` computes it for a one-stage design:

    V = sum_h (1 - f_h) n_h / (n_h - 1) sum_c (t_hc - tbar_h)(t_hc - tbar_h)'

with ``t_hc`` the PSU totals of the (already weighted) influence values in
stratum ``h``, ``n_h`` its number of PSUs and ``f_h = n_h / N_h`` the sampling
fraction when an fpc is given (PSUs drawn with replacement otherwise). A
stratum with a single PSU is handled as survey's ``options(survey.lonely.psu)``:
``fail`` (an error naming the stratum), ``adjust`` (centred at the grand mean),
``average`` (the mean of the other strata's contributions) or ``certainty`` /
``remove`` (no contribution).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from analysis.errors import DataError, OptionError

__all__ = ["Design", "ResolvedDesign", "LONELY_PSU"]

LONELY_PSU = ("fail", "adjust", "average", "certainty", "remove")


@dataclass(frozen=True)
class Design:
    """Column names of a survey design (any may be None) and how to treat lonely PSUs.

    ``nest=True``: cluster ids repeat across strata and are only unique within one
    (survey's ``nest = TRUE``); without it a cluster found in two strata is an error.
    ``fpc``: a column with the population number of PSUs in the stratum (or, when
    every value is at most 1, the sampling fraction), as survey's ``fpc=``.
    """

    weights: str | None = None
    cluster: str | None = None
    strata: str | None = None
    fpc: str | None = None
    nest: bool = False
    lonely_psu: str = "fail"

    def __post_init__(self):
        for name in ("weights", "cluster", "strata", "fpc"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise OptionError(f"design {name} must be a column name, got {value!r}")
        if self.lonely_psu not in LONELY_PSU:
            raise OptionError(f"lonely_psu must be one of {', '.join(LONELY_PSU)}; got {self.lonely_psu!r}")

    @classmethod
    def from_dict(cls, spec: dict | None, where: str = "design") -> Design | None:
        """A design from a mapping such as study.yaml's ``design:`` block (None when empty)."""
        if not spec:
            return None
        if not isinstance(spec, dict):
            raise OptionError(f"{where}: expected a mapping such as {{weights: w, cluster: psu}}, "
                              f"got {type(spec).__name__}")
        known = {"weights", "cluster", "strata", "fpc", "nest", "lonely_psu"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise OptionError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**spec)

    @property
    def is_empty(self) -> bool:
        return not any((self.weights, self.cluster, self.strata, self.fpc))

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.weights, self.cluster, self.strata, self.fpc) if c]

    def to_dict(self) -> dict:
        return {"weights": self.weights, "cluster": self.cluster, "strata": self.strata,
                "fpc": self.fpc, "nest": self.nest, "lonely_psu": self.lonely_psu}

    def resolve(self, data: pd.DataFrame, source: str | None = None) -> ResolvedDesign:
        """Check the design columns of ``data`` (rows numbered from 1) and return the arrays."""
        where = f"{source}: " if source else ""
        cols = [str(c) for c in data.columns]
        for role, col in (("weights", self.weights), ("cluster", self.cluster),
                          ("strata", self.strata), ("fpc", self.fpc)):
            if col is not None and col not in cols:
                from difflib import get_close_matches
                near = get_close_matches(col, cols, n=2, cutoff=0.6)
                hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
                raise DataError(f"{where}design {role} column {col!r} not found in the data{hint}")
        n = len(data)
        if n == 0:
            raise DataError(f"{where}the data has no rows")
        w = np.ones(n) if self.weights is None else _numeric(data, self.weights, where, "weights")
        if self.weights is not None:
            bad = np.flatnonzero(~(w > 0))
            if len(bad):
                r = int(bad[0])
                raise DataError(f"{where}weights column {self.weights!r}: row {r + 1} has "
                                f"{_show(data[self.weights].iloc[r])}; sampling weights must be positive "
                                f"({len(bad)} zero or negative value(s) in all)")
        psu = np.arange(n) if self.cluster is None else _codes(data, self.cluster, where, "cluster")
        strata = np.zeros(n, dtype=int) if self.strata is None else _codes(data, self.strata, where, "strata")
        if self.cluster is not None and self.strata is not None:
            if self.nest:
                psu = pd.factorize(pd.Series(list(zip(strata, psu))))[0]
            else:
                per = pd.DataFrame({"s": strata, "c": psu}).groupby("c")["s"].nunique()
                spanning = per[per > 1]
                if len(spanning):
                    c = int(spanning.index[0])
                    label = data[self.cluster].iloc[int(np.flatnonzero(psu == c)[0])]
                    raise DataError(f"{where}cluster {_show(label)} of {self.cluster!r} appears in "
                                    f"{int(spanning.iloc[0])} strata of {self.strata!r}; clusters must be "
                                    "nested in strata (use nest: true when cluster ids restart in "
                                    "each stratum)")
        fpc = None
        if self.fpc is not None:
            fpc = _numeric(data, self.fpc, where, "fpc")
            const = pd.Series(fpc).groupby(strata).nunique()
            if (const > 1).any():
                raise DataError(f"{where}fpc column {self.fpc!r} varies within a stratum; it must hold "
                                "the stratum's population size (or sampling fraction)")
        resolved = ResolvedDesign(weights=w, psu=psu, strata=strata, fpc=fpc,
                                  lonely_psu=self.lonely_psu, design=self,
                                  stratum_labels=_labels(data, self.strata, strata))
        resolved.check(where)
        return resolved


def _numeric(data, col, where, role) -> np.ndarray:
    s = data[col]
    num = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(num.isna().to_numpy())
    if len(bad):
        r = int(bad[0])
        what = "is missing" if pd.isna(s.iloc[r]) else f"has {_show(s.iloc[r])}"
        raise DataError(f"{where}{role} column {col!r}: row {r + 1} {what}; every respondent needs a "
                        f"numeric {role} value ({len(bad)} such row(s))")
    return num.to_numpy(dtype=float)


def _show(value) -> str:
    """A cell as the user wrote it (numpy scalars without their type)."""
    return repr(value.item() if hasattr(value, "item") else value)


def _codes(data, col, where, role) -> np.ndarray:
    s = data[col]
    miss = np.flatnonzero(s.isna().to_numpy())
    if len(miss):
        raise DataError(f"{where}{role} column {col!r}: row {int(miss[0]) + 1} is missing; every "
                        f"respondent needs a {role} ({len(miss)} such row(s))")
    return pd.factorize(s, sort=True)[0]


def _labels(data, col, codes) -> list[str]:
    if col is None:
        return [""]
    first = pd.Series(np.arange(len(codes))).groupby(codes).first()
    return [str(data[col].iloc[i]) for i in first]


@dataclass(eq=False)
class ResolvedDesign:
    """Per-row design arrays: weights, PSU codes (unique across strata), stratum codes, fpc."""

    weights: np.ndarray
    psu: np.ndarray
    strata: np.ndarray
    fpc: np.ndarray | None = None
    lonely_psu: str = "fail"
    design: Design | None = None
    stratum_labels: list = field(default_factory=list)

    def __len__(self):
        return len(self.weights)

    def subset(self, rows) -> ResolvedDesign:
        """The design of some rows (e.g. the cases a model kept)."""
        rows = np.asarray(rows)
        return ResolvedDesign(self.weights[rows], self.psu[rows], self.strata[rows],
                              None if self.fpc is None else self.fpc[rows], self.lonely_psu,
                              self.design, self.stratum_labels)

    @property
    def n_psu(self) -> int:
        return int(len(np.unique(self.psu)))

    @property
    def n_strata(self) -> int:
        return int(len(np.unique(self.strata)))

    @property
    def degf(self) -> int:
        """Design degrees of freedom: PSUs minus strata (survey's degf)."""
        return self.n_psu - self.n_strata

    def check(self, where: str = "") -> None:
        """Single-PSU strata under lonely_psu='fail' are an error naming the stratum."""
        if self.lonely_psu != "fail":
            return
        n_h = pd.Series(self.psu).groupby(self.strata).nunique()
        lonely = n_h[n_h < 2]
        if len(lonely) and self.design is not None and self.design.strata is not None:
            labels = [self.stratum_labels[int(h)] for h in lonely.index[:5]]
            raise DataError(f"{where}stratum {', '.join(map(repr, labels))} of {self.design.strata!r} has "
                            f"only one PSU, so its variance cannot be estimated; merge it with a "
                            "neighbouring stratum or choose lonely_psu adjust, average or certainty")
        if len(lonely) and len(n_h) == 1:
            raise DataError(f"{where}the design has a single PSU; standard errors need at least two")

    @cached_property
    def psu_layout(self):
        """(PSU of each row as 0..n_psu-1, stratum code of each PSU, fpc of each PSU or None)."""
        codes, row_psu = np.unique(self.psu, return_inverse=True)
        first_row = np.zeros(len(codes), dtype=int)
        first_row[row_psu[::-1]] = np.arange(len(row_psu))[::-1]
        fpc = None if self.fpc is None else self.fpc[first_row]
        return row_psu, self.strata[first_row], fpc

    def psu_totals(self, x: np.ndarray) -> np.ndarray:
        """Column totals of ``x`` (n x k) within each PSU, (n_psu x k)."""
        row_psu, stratum, _ = self.psu_layout
        return np.column_stack([np.bincount(row_psu, weights=x[:, j], minlength=len(stratum))
                                for j in range(x.shape[1])])

    def total_variance(self, x: np.ndarray, centre: bool = True) -> np.ndarray:
        """Taylor-linearisation variance of the column totals of ``x`` (rows already weighted).

        ``centre=False`` skips the centring of PSU totals (lavaan's cluster-robust
        "meat", whose scores sum to zero at the estimate).
        """
        x = np.asarray(x, dtype=float)
        one_col = x.ndim == 1
        x = x.reshape(len(x), -1)
        k = x.shape[1]
        totals = self.psu_totals(x)
        _, stratum, fpc = self.psu_layout
        out = np.zeros((k, k))
        n_strata, ok_strata = 0, 0
        for h in np.unique(stratum):
            in_h = stratum == h
            t = totals[in_h]
            n_h = len(t)
            n_strata += 1
            f = 1.0
            if fpc is not None:
                pop = fpc[in_h][0]
                f = 1.0 - pop if pop <= 1 else (pop - n_h) / pop   # a fraction, or the population size
            if n_h > 1:
                dev = t - t.mean(axis=0) if centre else t
                out += f * n_h / (n_h - 1) * (dev.T @ dev)
                ok_strata += 1
            elif self.lonely_psu == "adjust":
                out += f * (t.T @ t)          # centred at the grand mean (x is centred there)
                ok_strata += 1
            elif self.lonely_psu in ("certainty", "remove"):
                ok_strata += 1
            elif self.lonely_psu == "fail":
                raise DataError(f"stratum {self.stratum_labels[int(h)]!r} has only one PSU")
        if ok_strata and ok_strata < n_strata:   # "average": scale up to all strata
            out *= n_strata / ok_strata
        return out[0, 0] if one_col else out
