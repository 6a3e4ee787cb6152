"""Reading survey data and checking it against a model's variables.

``read_table(path)`` reads CSV (encoding, BOM and delimiter sniffed), XLSX,
SPSS ``.sav``, Stata ``.dta`` and Parquet; any failure is a
:class:`~analysis.errors.DataError` that names the file.
``check_model_data(df, variables)`` turns the usual mistakes (a misspelt
column, text in a numeric column, an item nobody varied on, too few cases)
into messages that name the column, row and value, and reports what listwise
deletion dropped. :class:`SampleStats` holds the per-group moments the
estimators work on.
"""

from __future__ import annotations

import csv
import difflib
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import DataError

__all__ = ["read_table", "read_survey", "check_model_data", "DataCheck", "SampleStats",
           "sample_moments", "FORMATS"]

# suffix -> format name
FORMATS: dict[str, str] = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".tab": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".sav": "sav", ".zsav": "sav",
    ".dta": "dta",
    ".parquet": "parquet", ".pq": "parquet",
}


# --------------------------------------------------------------------------- reading

def read_table(path: str | Path, format: str | None = None, *, sheet: str | int = 0) -> pd.DataFrame:
    """Read a data file into a DataFrame.

    Parameters
    ----------
    path : file to read.
    format : "csv", "xlsx", "sav", "dta" or "parquet"; guessed from the suffix when None.
    sheet : worksheet name or index for XLSX.

    Raises
    ------
    DataError
        The file does not exist, has an unknown format, or cannot be parsed;
        the message names the file (and the line, for CSV).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    fmt = (format or FORMATS.get(path.suffix.lower(), "")).lower()
    if fmt == "excel":
        fmt = "xlsx"
    if fmt not in set(FORMATS.values()):
        known = ", ".join(sorted(set(FORMATS)))
        raise DataError(f"{path}: unknown data format {path.suffix or '(no suffix)'!r}; "
                        f"use one of {known} or pass format=")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    reader = {"csv": _read_csv, "xlsx": _read_xlsx, "sav": _read_sav, "dta": _read_dta,
              "parquet": _read_parquet}[fmt]
    try:
        df = reader(path, sheet) if fmt == "xlsx" else reader(path)
    except DataError:
        raise
    except Exception as exc:  # every reader's own failure, reworded with the file name
        raise DataError(f"{path}: cannot be read as {fmt.upper()} ({_short(exc)})") from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    if df.shape[1] == 0:
        raise DataError(f"{path}: no columns found")
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicated column names: {', '.join(dup)}")
    return df


def read_survey(path: str | Path | None = None, instrument=None, *, study: str | Path | None = None,
                format: str | None = None, mapping: str | Path | None = None) -> pd.DataFrame:
    """The one reader of every command that analyses survey answers.

    * ``study``: the answers of a study store (``resilience import --study``);
    * a file with an ``instrument``: what ``resilience import`` reads (Kobo, ODK
      Central, REDCap, LimeSurvey exports, CSV, XLSX, .sav, .dta, Parquet), its
      columns mapped to the instrument's item ids and labels to codes, by the same
      code (:func:`instruments.ingest.import_responses`);
    * a file alone: a plain table (:func:`read_table`).

    Missing codes and reverse keys are the instrument's to apply afterwards
    (``analysis.psychometrics.items.instrument_model_data``, ``reliability_report``, ``efa_report``).
    Raises :class:`DataError` naming the file or the store.
    """
    if study is not None:
        return _read_store(Path(study))
    if path is None:
        raise DataError("no data: give a data file or --study DIR (a study store)")
    path = Path(path)
    platform_formats = ("kobo", "odk", "redcap", "limesurvey")
    if instrument is None:
        if format in platform_formats:
            raise DataError(f"{path}: a {format} export needs the instrument (--instrument) to map its columns")
        return read_table(path, format)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    from instruments.ingest import ImportError_, import_responses

    try:
        res = import_responses(path, instrument, format=format, mapping=mapping)
    except ImportError_ as exc:
        message = exc.issue.message  # named once (the importer's message may start with the file's name)
        message = message.removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")
        raise DataError(f"{path}: {message}") from None
    return res.data


def _read_store(root: Path) -> pd.DataFrame:
    from instruments.store import Study as Store

    db = root / "study.duckdb"
    if not db.is_file():
        raise DataError(f"{root}: not a study store (no study.duckdb); create one with "
                        "`resilience import FILE --instrument I --study DIR`")
    data = Store(root).responses()
    if data.empty:
        raise DataError(f"{db}: the study store holds no responses")
    return data


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _decode(path: Path, raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path}: looks like a binary file, not CSV text")
    for enc in ("utf-8", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _read_csv(path: Path) -> pd.DataFrame:
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    from instruments.ingest import sniff_delimiter  # the importer's sniffing: both readers agree on a file

    sep = sniff_delimiter(text)
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep), [])
    dup = sorted({h.strip() for h in header if h.strip() and
                  [x.strip() for x in header].count(h.strip()) > 1})
    if dup:
        raise DataError(f"{path}: duplicated column names: {', '.join(dup)}")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({str(exc).strip()})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: no data rows") from exc
    if sep != ",":  # ';'-separated files from European locales write 3,5 for 3.5
        for col in df.columns:
            if pd.api.types.is_numeric_dtype(df[col]):
                continue
            values = df[col].dropna().astype(str).str.strip()
            if len(values) and values.str.fullmatch(r"-?\d+,\d+|-?\d+").all():
                df[col] = pd.to_numeric(df[col].str.replace(",", ".", regex=False))
    return df


def _read_xlsx(path: Path, sheet: str | int) -> pd.DataFrame:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a valid XLSX file (corrupt or not an Excel workbook)")
    try:
        return pd.read_excel(path, sheet_name=sheet, engine="openpyxl")
    except (ValueError, KeyError) as exc:
        if "Worksheet" in str(exc) or "sheet" in str(exc).lower():
            raise DataError(f"{path}: no worksheet {sheet!r}") from exc
        raise


def _read_sav(path: Path) -> pd.DataFrame:
    import pyreadstat

    df, _meta = pyreadstat.read_sav(str(path), apply_value_formats=False, user_missing=False)
    return df


def _read_dta(path: Path) -> pd.DataFrame:
    return pd.read_stata(path, convert_categoricals=False)


def _read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


# --------------------------------------------------------------------------- checking

@dataclass(frozen=True)
class DataCheck:
    """The numeric data a model will use, with what was dropped and why."""

    data: pd.DataFrame
    """Model variables (float) plus the group column, rows kept."""
    variables: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    missing: dict[str, Any] = field(default_factory=dict)
    """n_read, n_used, n_dropped, dropped_rows (1-based, first 20), all_missing_rows,
    n_missing_cells, missing_by_variable."""


def _close(name: str, columns: Sequence[str]) -> str:
    lower = {c.lower(): c for c in columns}
    if name.lower() in lower:
        return f" (did you mean {lower[name.lower()]!r}? names are case-sensitive)"
    hits = difflib.get_close_matches(name, list(columns), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(h) for h in hits)}?)" if hits else ""


def _row_list(rows: Iterable[int], limit: int = 10) -> str:
    rows = list(rows)
    text = ", ".join(str(r) for r in rows[:limit])
    return text + (f", ... ({len(rows)} in all)" if len(rows) > limit else "")


def _as_numeric(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = pd.to_numeric(pd.Series(s.cat.categories), errors="coerce")
        if cats.notna().all():
            return pd.to_numeric(s.astype(object), errors="coerce").astype(float)
    stripped = s.map(lambda v: v.strip() if isinstance(v, str) else v)
    stripped = stripped.replace({"": np.nan, ".": np.nan})  # '.' is SAS/Stata's missing
    num = pd.to_numeric(stripped, errors="coerce")
    bad = stripped.notna() & num.isna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        n_bad = int(bad.sum())
        raise DataError(
            f"{where}column {col!r} is not numeric: row {pos + 1} has {s.iloc[pos]!r}"
            f"{f' ({n_bad} non-numeric values in all)' if n_bad > 1 else ''}; "
            "recode text answers to numbers (or declare them missing) before fitting")
    return num.astype(float)


def check_model_data(
    df: pd.DataFrame,
    variables: Sequence[str],
    *,
    group: str | None = None,
    missing: str = "listwise",
    source: str | Path | None = None,
    min_cases: int | None = None,
) -> DataCheck:
    """Check that `df` can feed a model on `variables`, and select those columns.

    Rows are 1-based data rows (the header is not counted). With
    ``missing="listwise"`` rows with any missing model variable are dropped
    and reported; with ``"fiml"`` they are kept, and only rows missing on
    every model variable are dropped.

    Raises
    ------
    DataError
        Variables not in the data (with close matches), a non-numeric column
        (naming the first bad value and its row), a variable missing for
        every case, an item with zero variance, or fewer cases than variables.
    """
    where = f"{source}: " if source else ""
    variables = list(dict.fromkeys(variables))
    columns = [str(c) for c in df.columns]
    absent = [v for v in variables if v not in columns]
    if group is not None and group not in columns:
        raise DataError(f"{where}group column {group!r} not found in the data"
                        f"{_close(group, columns)}")
    if absent:
        details = "; ".join(f"{v!r}{_close(v, columns)}" for v in absent)
        shown = ", ".join(columns[:15]) + (", ..." if len(columns) > 15 else "")
        raise DataError(f"{where}variable{'s' if len(absent) > 1 else ''} not found in the data: "
                        f"{details}. The data has columns: {shown}")
    if missing not in ("listwise", "fiml", "ml"):
        raise DataError(f"missing must be 'listwise' or 'fiml'; got {missing!r}")

    warnings: list[str] = []
    dtypes = df.dtypes
    if df.columns.is_unique and all(v in dtypes.index and isinstance(dtypes[v], np.dtype)
                                    and dtypes[v].kind in "biuf" for v in variables):
        # plain numpy columns (a CSV of numbers): one conversion instead of one per column
        data = pd.DataFrame(df[variables].to_numpy(dtype=float), index=df.index, columns=variables)
    else:
        data = pd.DataFrame({v: _as_numeric(df, v, where) for v in variables}, index=df.index)
    n_read = len(data)
    row_missing = np.isnan(data[variables].to_numpy())

    everyone_missing = [v for v, none in zip(variables, row_missing.all(axis=0)) if none]
    if everyone_missing:
        raise DataError(f"{where}variable{'s' if len(everyone_missing) > 1 else ''} "
                        f"{', '.join(repr(v) for v in everyone_missing)} missing for every case")

    if group is not None:
        g = df[group]
        no_group = g.isna().to_numpy()
        if no_group.any():
            rows = np.flatnonzero(no_group) + 1
            warnings.append(f"{int(no_group.sum())} case(s) with no value for the group "
                            f"variable {group!r} were dropped (rows {_row_list(rows)})")
        data[group] = g
    else:
        no_group = np.zeros(n_read, dtype=bool)

    all_missing = row_missing.all(axis=1) & ~no_group
    if all_missing.any():
        rows = np.flatnonzero(all_missing) + 1
        warnings.append(f"{int(all_missing.sum())} case(s) answered none of the model variables "
                        f"and were dropped (rows {_row_list(rows)})")
    if missing == "listwise":
        drop = row_missing.any(axis=1) | no_group
        partial = drop & ~all_missing & ~no_group
        if partial.any():
            warnings.append(f"{int(partial.sum())} of {n_read} cases with missing values "
                            "were dropped (listwise deletion)")
    else:
        drop = all_missing | no_group
    kept = data.loc[~drop]
    n_used = len(kept)

    blocks = [(None, kept)] if group is None else list(kept.groupby(group, sort=True))
    for label, part in blocks:
        in_group = "" if label is None else f" in group {label!r}"
        n_vars = len(variables)
        need = n_vars + 1 if min_cases is None else min_cases
        if len(part) < need:
            what = "complete cases" if missing == "listwise" else "cases"
            raise DataError(f"{where}only {len(part)} {what}{in_group} for {n_vars} variables; "
                            f"the model needs more cases than observed variables "
                            f"(at least {need})")
        sd = part[variables].std(ddof=0, skipna=True)
        constant = [v for v in variables if not (sd[v] > 0)]
        if constant:
            vals = ", ".join(f"{v!r} (every case = {part[v].dropna().iloc[0]:g})"
                             if part[v].notna().any() else f"{v!r} (no values)"
                             for v in constant)
            raise DataError(f"{where}zero variance{in_group}: {vals}; an item nobody varied on "
                            "carries no information; drop it from the model")

    miss_by_var = dict(zip(variables, (int(k) for k in row_missing.sum(axis=0))))
    summary = {
        "n_read": n_read,
        "n_used": n_used,
        "n_dropped": int(n_read - n_used),
        "dropped_rows": [int(r) for r in (np.flatnonzero(drop) + 1)[:20]],
        "all_missing_rows": int(all_missing.sum()),
        "n_missing_cells": int(row_missing.sum()),
        "missing_by_variable": {k: v for k, v in miss_by_var.items() if v},
        "method": "listwise" if missing == "listwise" else "fiml",
    }
    if missing != "listwise":
        patterns = np.unique(row_missing[~drop], axis=0)
        summary["n_patterns"] = int(len(patterns))
        if group is not None:   # lavaan reports the patterns per group
            labels = data.loc[~drop, group].astype(str).to_numpy()
            summary["n_patterns_by_group"] = {
                lab: int(len(np.unique(row_missing[~drop][labels == lab], axis=0)))
                for lab in pd.unique(labels)}
    return DataCheck(data=kept, variables=tuple(variables), warnings=tuple(warnings),
                     missing=summary)


# --------------------------------------------------------------------------- moments

def sample_moments(y: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Covariance matrix (divisor N, lavaan's ML sample statistics) and means of the rows
    of ``y``; with case ``weights`` the weighted ones (divisor: the sum of the weights)."""
    y = np.asarray(y, dtype=float)
    if weights is None:
        mean = y.mean(axis=0)
        centred = y - mean
        return centred.T @ centred / len(y), mean
    w = np.asarray(weights, dtype=float)
    mean = w @ y / w.sum()
    centred = y - mean
    return (centred * w[:, None]).T @ centred / w.sum(), mean


@dataclass(frozen=True, eq=False)
class SampleStats:
    """Per-group sample moments in lavaan's ML convention (covariance divisor N)."""

    ov_names: tuple[str, ...]
    cov: tuple[np.ndarray, ...]
    mean: tuple[np.ndarray | None, ...]
    nobs: tuple[int, ...]
    group_labels: tuple[str, ...] = ()

    @property
    def ntotal(self) -> int:
        return int(sum(self.nobs))

    @property
    def n_groups(self) -> int:
        return len(self.nobs)

    @classmethod
    def from_data(cls, data: pd.DataFrame, ov_names: Sequence[str], *,
                  group: str | None = None) -> SampleStats:
        """Moments of complete rows (listwise), one set per level of `group`."""
        ov = list(ov_names)
        parts = [("", data)] if group is None else list(data.groupby(group, sort=True))
        covs, means, ns, labels = [], [], [], []
        for label, part in parts:
            x = part[ov].dropna().to_numpy(dtype=float)
            cov, mu = sample_moments(x)
            covs.append(cov)
            means.append(mu)
            ns.append(len(x))
            labels.append(str(label))
        return cls(tuple(ov), tuple(covs), tuple(means), tuple(ns),
                   tuple(labels) if group is not None else ())

    @classmethod
    def from_cov(cls, cov: pd.DataFrame | np.ndarray, nobs: int, *,
                 mean: Sequence[float] | None = None, ov_names: Sequence[str] | None = None,
                 rescale: bool = True) -> SampleStats:
        """From a covariance matrix with divisor N - 1 (rescaled to N, as lavaan does for ML)."""
        if isinstance(cov, pd.DataFrame):
            ov_names = ov_names or [str(c) for c in cov.columns]
            cov = cov.to_numpy(dtype=float)
        cov = np.asarray(cov, dtype=float)
        if ov_names is None:
            raise DataError("ov_names are required with a covariance matrix given as an array")
        if rescale:
            cov = cov * (nobs - 1) / nobs
        mu = None if mean is None else np.asarray(mean, dtype=float)
        return cls(tuple(ov_names), (cov,), (mu,), (int(nobs),))
