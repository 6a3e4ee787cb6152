"""The codebook (or labelled data) as an SPSS ``.sav`` file, via pyreadstat.

Every item becomes a variable with its question text as the variable label
(default language), value labels for every category and missing code, and
the missing codes declared as SPSS user-missing values, so SPSS, PSPP, R
(haven) and Stata read the file with the right labels. Without ``data`` the
file has the variables and no cases (a codebook); with ``data`` (responses in
the suite's shape) it carries the answers too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

__all__ = ["sav_metadata", "export_sav", "spss_names", "stata_names"]

# Words SPSS and Stata reserve; a variable cannot be called that.
_SPSS_RESERVED = {"ALL", "AND", "BY", "EQ", "GE", "GT", "LE", "LT", "NE", "NOT", "OR", "TO", "WITH"}
_STATA_RESERVED = {"_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long",
                   "_n", "_N", "_pi", "_pred", "_rc", "_skip", "strl", "using", "with"}


def _legal_names(columns: list[str], *, first: str, rest: str, max_bytes: int, reserved: set[str],
                 fold_reserved: bool) -> dict[str, str]:
    """{old: new} for each name the format cannot hold; new names unique case-insensitively."""
    def ok(name: str) -> bool:
        key = name.upper() if fold_reserved else name
        return (bool(re.fullmatch(f"{first}{rest}*", name)) and not name.endswith(".")
                and len(name.encode("utf-8")) <= max_bytes and key not in reserved)

    taken = {c.casefold() for c in columns if ok(c)}
    renamed: dict[str, str] = {}
    seen: set[str] = set()
    for col in columns:
        if ok(col) and col.casefold() not in seen:
            seen.add(col.casefold())
            continue
        base = re.sub(f"(?!{rest}).", "_", col).strip("_.") or "var"
        if not re.match(first, base):
            base = "v_" + base
        base = base.encode("utf-8")[: max_bytes - 4].decode("utf-8", "ignore").rstrip(".")
        if (base.upper() if fold_reserved else base) in reserved:
            base += "_"
        new, k = base, 1
        while new.casefold() in taken or new.casefold() in seen:
            k += 1
            new = f"{base}_{k}"
        renamed[col] = new
        seen.add(new.casefold())
        taken.add(new.casefold())
    return renamed


def spss_names(columns: list[str]) -> dict[str, str]:
    """{old: new} for column names SPSS cannot hold: a letter first, then letters, digits and
    ``_ . @ # $``, not ending in a full stop, at most 64 bytes, no reserved word, unique
    whatever the case."""
    return _legal_names(columns, first=r"[^\W\d_]", rest=r"[\w.@#$]", max_bytes=64,
                        reserved=_SPSS_RESERVED, fold_reserved=True)


def stata_names(columns: list[str]) -> dict[str, str]:
    """{old: new} for column names Stata cannot hold: a letter or underscore first, then
    letters, digits and underscores, at most 32 characters, no reserved word."""
    return _legal_names(columns, first=r"[^\W\d]", rest=r"\w", max_bytes=32,
                        reserved=_STATA_RESERVED, fold_reserved=False)


def sav_metadata(instrument, language: str | None = None) -> dict:
    """Keyword arguments for :func:`pyreadstat.write_sav` derived from the instrument."""
    lang = language or instrument.default_language
    column_labels, value_labels, missing, measure, formats = {}, {}, {}, {}, {}
    for it in instrument.items:
        scale = instrument.scales[it.scale]
        column_labels[it.id] = it.text.get(lang, it.id)[:255]
        if scale.is_categorical or scale.missing:
            labels = {float(c.code): c.label.get(lang, str(c.code)) for c in [*scale.categories, *scale.missing]}
            if labels:
                value_labels[it.id] = labels
        if scale.missing_codes:
            codes = sorted(scale.missing_codes)
            if len(codes) <= 3:
                missing[it.id] = [float(c) for c in codes]
            else:  # SPSS allows a range plus one value
                missing[it.id] = [{"lo": float(codes[0]), "hi": float(codes[-1])}]
        measure[it.id] = {"ordinal": "ordinal", "nominal": "nominal", "numeric": "scale"}.get(scale.type, "nominal")
        if scale.is_categorical or (scale.type == "numeric" and scale.integer):
            # whole codes shown as 3 and -9, not 3.00 (SPSS's default F8.2)
            bounds = [*scale.codes, *scale.missing_codes, scale.min or 0, scale.max or 0]
            formats[it.id] = f"F{max(len(str(int(b))) for b in bounds)}.0"
    return {"column_labels": column_labels, "variable_value_labels": value_labels,
            "missing_ranges": missing, "variable_measure": measure, "variable_format": formats,
            "file_label": f"{instrument.title} {instrument.version}"[:64]}


def export_sav(instrument, path: str | Path, *, data: pd.DataFrame | None = None,
               language: str | None = None) -> Path:
    """Write the .sav (atomically)."""
    import pyreadstat

    from instruments.atomic import atomic_write

    meta = sav_metadata(instrument, language)
    cols = {}
    for it in instrument.items:
        scale = instrument.scales[it.scale]
        source = data[it.id] if data is not None and it.id in data else pd.Series([], dtype="float64")
        if scale.type in ("text", "date"):
            s = source.astype("string") if len(source) else pd.Series([], dtype=object)
            cols[it.id] = s.astype(object).where(s.notna(), "") if len(s) else s.astype(object)
        else:
            cols[it.id] = pd.to_numeric(source, errors="coerce").astype("float64")
    frame = pd.DataFrame(cols)
    if data is not None:
        front = {}
        for c in ("respondent_id", "form_version", "language"):
            if c in data:
                front[c] = data[c].astype("string").fillna("").astype(object).to_numpy()
        frame = pd.concat([pd.DataFrame(front, index=frame.index), frame], axis=1) if front else frame
    renamed = spss_names([str(c) for c in frame.columns])  # an item id SPSS reserves (TO, ALL ...)
    if renamed:
        frame = frame.rename(columns=renamed)
        meta = {k: ({renamed.get(c, c): v for c, v in m.items()} if isinstance(m, dict) else m)
                for k, m in meta.items()}
    if frame.empty and len(frame.columns):
        # pyreadstat needs the column types even with no cases
        for c in frame.columns:
            if frame[c].dtype == object:
                frame[c] = pd.Series([], dtype=object)
    return atomic_write(Path(path), lambda p: pyreadstat.write_sav(frame, str(p), **meta))
