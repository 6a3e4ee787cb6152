"""XLSForm for KoboToolbox and ODK Collect, from an instrument.

Sheets ``survey``, ``choices`` and ``settings``. Every declared language gets
its own ``label::Language (code)`` / ``hint::`` / ``constraint_message::``
columns, the form opens in the instrument's default language, and each
section is a ``begin_group``/``end_group`` with its intro as a note. Items
become ``select_one <scale>`` (``appearance likert`` on ordinal scales),
``integer``/``decimal`` with a ``constraint`` for numeric bounds (missing codes
allowed), ``text`` or ``date``; ``required`` and ``relevant`` come from the
instrument (relevance rendered as ``${X} = 1``). ``start``, ``end`` and
``audit`` metadata record timings. The ``version`` is ``yyyymmddrr``.

Choice names are the numeric codes (``-9`` included), so Kobo/ODK exports
carry the same codes as every other path of the suite.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from instruments.relevance import to_xlsform

__all__ = ["LANGUAGE_NAMES", "language_label", "xlsform_version", "xlsform_sheets", "export_xlsform"]

LANGUAGE_NAMES = {
    "en": "English", "ur": "Urdu", "ar": "Arabic", "bn": "Bengali", "pa": "Punjabi", "so": "Somali",
    "pl": "Polish", "cy": "Welsh", "fr": "French", "es": "Spanish", "de": "German", "tr": "Turkish",
    "gu": "Gujarati", "ps": "Pashto", "fa": "Persian", "ro": "Romanian", "pt": "Portuguese",
    "it": "Italian", "zh": "Chinese", "ta": "Tamil", "hi": "Hindi", "ku": "Kurdish", "ti": "Tigrinya",
}


def language_label(code: str) -> str:
    """XLSForm language column suffix: ``English (en)``."""
    return f"{LANGUAGE_NAMES.get(code, code)} ({code})"


def xlsform_version(date: _dt.date | None = None, revision: int = 1) -> str:
    """``yyyymmddrr``: the date of the build and a two-digit revision."""
    date = date or _dt.date.today()
    return f"{date:%Y%m%d}{revision:02d}"


def _texts(prefix: str, text: dict | None, languages: list[str]) -> dict[str, str]:
    return {f"{prefix}::{language_label(lang)}": (text or {}).get(lang, "") for lang in languages}


def _constraint(scale) -> tuple[str, dict]:
    parts = []
    if scale.min is not None:
        parts.append(f". >= {scale.min:g}")
    if scale.max is not None:
        parts.append(f". <= {scale.max:g}")
    if not parts:
        return "", {}
    rule = " and ".join(parts)
    if scale.missing_codes:
        rule = f"({rule}) or " + " or ".join(f". = {c}" for c in scale.missing_codes)
    lo = "" if scale.min is None else f"{scale.min:g}"
    hi = "" if scale.max is None else f"{scale.max:g}"
    return rule, {"en": f"Please enter a value from {lo} to {hi}."}


def xlsform_sheets(instrument, *, version: str | None = None) -> dict[str, pd.DataFrame]:
    """The three sheets as DataFrames (``survey``, ``choices``, ``settings``)."""
    langs = list(instrument.languages)
    survey: list[dict] = [
        {"type": "start", "name": "start"},
        {"type": "end", "name": "end"},
        {"type": "audit", "name": "audit"},
    ]
    if instrument.consent is not None:
        survey.append({"type": "note", "name": "consent_text", **_texts("label", instrument.consent.text, langs)})
    for section in instrument.sections:
        survey.append({"type": "begin_group", "name": section.id, **_texts("label", section.title, langs)})
        if section.intro:
            survey.append({"type": "note", "name": f"{section.id}_intro", **_texts("label", section.intro, langs)})
        for it in section.items:
            scale = instrument.scales[it.scale]
            row = {"name": it.id, **_texts("label", it.text, langs)}
            if it.help:
                row.update(_texts("hint", it.help, langs))
            if scale.is_categorical:
                row["type"] = f"select_one {scale.id}"
                if scale.type == "ordinal":
                    row["appearance"] = "likert"
                elif len(scale.categories) + len(scale.missing) > 8:
                    row["appearance"] = "minimal"
            elif scale.type == "numeric":
                row["type"] = "integer" if scale.integer else "decimal"
                rule, message = _constraint(scale)
                if rule:
                    row["constraint"] = rule
                    row.update(_texts("constraint_message", {lang: message.get("en", "") for lang in langs}, langs))
            elif scale.type == "date":
                row["type"] = "date"
            else:
                row["type"] = "text"
            if it.required:
                row["required"] = "yes"
            if it.relevant:
                row["relevant"] = to_xlsform(it.relevant)
            survey.append(row)
        survey.append({"type": "end_group", "name": ""})
    choices: list[dict] = []
    used = {it.scale for it in instrument.items}
    for sid, scale in instrument.scales.items():
        if sid not in used or not scale.is_categorical:
            continue
        for cat in [*scale.categories, *scale.missing]:
            choices.append({"list_name": sid, "name": str(cat.code), **_texts("label", cat.label, langs)})
    settings = [{
        "form_title": instrument.title,
        "form_id": instrument.id,
        "version": version or xlsform_version(),
        "default_language": language_label(instrument.default_language),
        "instance_name": "concat('" + instrument.id + "-', ${start})",
    }]
    survey_cols = ["type", "name", *[f"label::{language_label(lang)}" for lang in langs],
                   *[f"hint::{language_label(lang)}" for lang in langs],
                   "required", "relevant", "constraint",
                   *[f"constraint_message::{language_label(lang)}" for lang in langs], "appearance"]
    survey_df = pd.DataFrame(survey).reindex(columns=survey_cols).fillna("")
    survey_df = survey_df.loc[:, [c for c in survey_df.columns if c in ("type", "name") or (survey_df[c] != "").any()]]
    choices_cols = ["list_name", "name", *[f"label::{language_label(lang)}" for lang in langs]]
    return {
        "survey": survey_df,
        "choices": pd.DataFrame(choices).reindex(columns=choices_cols).fillna(""),
        "settings": pd.DataFrame(settings),
    }


def export_xlsform(instrument, path: str | Path, *, version: str | None = None) -> Path:
    """Write the XLSForm workbook (every cell stored as text, never as a formula)."""
    from instruments.export_data import write_xlsx

    return write_xlsx(xlsform_sheets(instrument, version=version), path)
