"""Formatting for people: the one place where numbers are rounded and labelled.

Library functions return full precision. Tables meant to be read (summaries,
rich output, reports) pass through :func:`format_table`, as pingouin passes
its results through ``_postprocess_dataframe``; JSON goes through
:func:`jsonable`, which keeps full precision and turns NaN into ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# numpy and pandas are imported inside the functions: the command line imports
# this module for every command, and `resilience --help` should not pay for them.

__all__ = [
    "DIGITS",
    "COLUMN_LABELS",
    "fmt_number",
    "fmt_pvalue",
    "format_table",
    "jsonable",
]

# Rounding per column (lavaan prints 3 decimals everywhere).
DIGITS: dict[str, int] = {
    "est": 3, "se": 3, "z": 3, "pvalue": 3, "ci.lower": 3, "ci.upper": 3,
    "std.lv": 3, "std.all": 3, "std.nox": 3, "mi": 3, "epc": 3,
    "sepc.lv": 3, "sepc.all": 3, "sepc.nox": 3, "r2": 3,
    "chisq": 3, "df": 0, "chisq.diff": 3, "df.diff": 0,
    "aic": 3, "bic": 3, "logl": 3, "cfi": 3, "tli": 3, "rmsea": 3, "srmr": 3,
}
DEFAULT_DIGITS = 3

# Column headers as lavaan prints them.
COLUMN_LABELS: dict[str, str] = {
    "est": "Estimate", "se": "Std.Err", "z": "z-value", "pvalue": "P(>|z|)",
    "ci.lower": "ci.lower", "ci.upper": "ci.upper",
    "std.lv": "Std.lv", "std.all": "Std.all", "std.nox": "Std.nox",
}


def _is_missing(value: Any) -> bool:
    import pandas as pd

    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_number(value: Any, digits: int = DEFAULT_DIGITS, *, width: int = 0) -> str:
    """A number as text with fixed decimals; blank for missing, '-0.000' avoided."""
    import numpy as np

    if _is_missing(value):
        return " " * width if width else ""
    if isinstance(value, (bool, np.bool_)):
        text = str(bool(value))
    elif isinstance(value, (int, np.integer)) and digits == 0:
        text = str(int(value))
    else:
        x = float(value)
        if math.isinf(x):
            text = "Inf" if x > 0 else "-Inf"
        else:
            text = f"{x:.{digits}f}"
            if text.startswith("-") and float(text) == 0.0:
                text = text[1:]
    return text.rjust(width) if width else text


def fmt_pvalue(value: Any, digits: int = DEFAULT_DIGITS, *, width: int = 0) -> str:
    """A p-value to `digits` decimals (lavaan prints 0.000 rather than '<.001')."""
    return fmt_number(value, digits, width=width)


def format_table(
    table: pd.DataFrame,
    *,
    digits: Mapping[str, int] | int | None = None,
    labels: bool = False,
) -> pd.DataFrame:
    """Round the numeric columns of a results table for display.

    ``digits`` is a per-column mapping (defaults to :data:`DIGITS`) or a
    single int for every numeric column. With ``labels=True`` the columns are
    renamed to lavaan's printed headers (``est`` -> ``Estimate``). The input
    is not modified.
    """
    import pandas as pd

    out = table.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col]):
            continue
        if isinstance(digits, int):
            nd = digits
        else:
            nd = (digits or DIGITS).get(col, DIGITS.get(col, DEFAULT_DIGITS))
        out[col] = out[col].round(nd)
    if labels:
        out = out.rename(columns=COLUMN_LABELS)
    return out


def jsonable(obj: Any) -> Any:
    """Plain-Python version of `obj` for ``json.dumps``: NaN/inf -> None, numpy -> Python.

    Full precision is kept; DataFrames become lists of records, Series dicts.
    """
    import numpy as np
    import pandas as pd

    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [jsonable(rec) for rec in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return None if (math.isnan(x) or math.isinf(x)) else x
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)
