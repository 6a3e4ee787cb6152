"""LimeSurvey survey structure as a Tab Separated Value file (.txt).

The format of LimeSurvey's "Tab Separated Values format (*.txt)" survey export
and import: UTF-8 with a byte order mark, one row per survey setting (class
``S``), language setting (``SL``), group (``G``), question (``Q``) and answer
(``A``). The base language comes first, then the same rows in the same order
for each further language. Relationships follow from the order (answers
belong to the question above them).

Question codes are letters and digits only (``TRUSTORG_POLICE`` ->
``TRUSTORGPOLICE``) and answer codes alphanumeric (``-9`` -> ``N9``); the
same conversions are used by :mod:`instruments.ingest`, so LimeSurvey
response exports come back as the instrument's items and codes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from instruments import relevance as rel
from instruments.ingest import limesurvey_answer_code, limesurvey_code

__all__ = ["LIMESURVEY_COLUMNS", "limesurvey_relevance", "limesurvey_rows", "export_limesurvey"]

LIMESURVEY_COLUMNS = [
    "id", "related_id", "class", "type/scale", "name", "relevance", "text", "help",
    "language", "validation", "mandatory", "other", "default", "same_default",
]


def limesurvey_relevance(expr, instrument) -> str:
    """ExpressionScript: ``CONSENT.NAOK == "1"`` (answer codes as LimeSurvey stores them)."""
    expr = rel.parse(expr) if isinstance(expr, str) else expr

    def value(item_id, v):
        try:
            scale = instrument.scale_of(item_id)
        except KeyError:
            scale = None
        if scale is not None and scale.is_categorical and isinstance(v, (int, float)) and float(v).is_integer():
            return f'"{limesurvey_answer_code(int(v))}"'
        return f'"{v}"' if isinstance(v, str) else repr(v)

    def render(e) -> str:
        if isinstance(e, rel.Compare):
            return f"{limesurvey_code(e.item)}.NAOK {e.op} {value(e.item, e.value)}"
        if isinstance(e, rel.In):
            parts = [f"{limesurvey_code(e.item)}.NAOK == {value(e.item, v)}" for v in e.values]
            body = "(" + " or ".join(parts) + ")"
            return f"!{body}" if e.negate else body
        if isinstance(e, rel.Not):
            return f"!({render(e.term)})"
        sep = " and " if isinstance(e, rel.And) else " or "
        return "(" + sep.join(render(t) for t in e.terms) + ")"

    out = render(expr)
    return out[1:-1] if out.startswith("(") and out.endswith(")") and isinstance(expr, (rel.And, rel.Or)) else out


def _qtype(scale) -> str:
    return {"ordinal": "L", "nominal": "L", "numeric": "N", "date": "D"}.get(scale.type, "S")


def limesurvey_rows(instrument, *, form_version: str | None = None) -> pd.DataFrame:
    """The survey structure as a DataFrame with :data:`LIMESURVEY_COLUMNS`."""
    langs = [instrument.default_language] + [lang for lang in instrument.languages if lang != instrument.default_language]
    rows: list[dict] = [
        {"class": "S", "name": "sid", "text": ""},
        {"class": "S", "name": "language", "text": langs[0]},
        {"class": "S", "name": "additional_languages", "text": " ".join(langs[1:])},
        {"class": "S", "name": "format", "text": "G"},
        {"class": "S", "name": "datestamp", "text": "Y"},
        {"class": "S", "name": "savetimings", "text": "Y"},
        {"class": "S", "name": "anonymized", "text": "N"},
    ]
    for lang in langs:
        rows += [
            {"class": "SL", "name": "surveyls_title", "text": instrument.title, "language": lang},
            {"class": "SL", "name": "surveyls_description", "text": instrument.description, "language": lang},
            {"class": "SL", "name": "surveyls_welcometext",
             "text": instrument.consent.text.get(lang, "") if instrument.consent else "", "language": lang},
        ]
    for lang in langs:
        qid = 0
        for gid, section in enumerate(instrument.sections, start=1):
            rows.append({"id": gid, "class": "G", "name": section.title.get(lang, section.id),
                         "relevance": "1", "text": (section.intro or {}).get(lang, ""), "language": lang})
            for it in section.items:
                qid += 1
                scale = instrument.scales[it.scale]
                rows.append({
                    "id": qid, "class": "Q", "type/scale": _qtype(scale), "name": limesurvey_code(it.id),
                    "relevance": limesurvey_relevance(it.relevant, instrument) if it.relevant else "1",
                    "text": it.text.get(lang, ""), "help": (it.help or {}).get(lang, ""), "language": lang,
                    "mandatory": "Y" if it.required else "N", "other": "N", "same_default": "0",
                })
                if scale.is_categorical:
                    for cat in [*scale.categories, *scale.missing]:
                        rows.append({"id": qid, "class": "A", "type/scale": "0",
                                     "name": limesurvey_answer_code(cat.code),
                                     "relevance": str(cat.code) if cat in scale.categories else "",
                                     "text": cat.label.get(lang, ""), "language": lang})
        # an equation question stamps each response with the form version
        qid += 1
        rows.append({"id": qid, "class": "Q", "type/scale": "*", "name": "formversion", "relevance": "1",
                     "text": form_version or instrument.version, "language": lang,
                     "mandatory": "N", "other": "N", "same_default": "0"})
    # ids as text first: a column of ints and blanks would otherwise print as "1.0"
    rows = [{k: str(v) for k, v in r.items()} for r in rows]
    return pd.DataFrame(rows).reindex(columns=LIMESURVEY_COLUMNS).fillna("")


def export_limesurvey(instrument, path: str | Path, *, form_version: str | None = None) -> Path:
    """Write the .txt (tab-separated, UTF-8 with BOM, as LimeSurvey exports it)."""
    from instruments.export_data import write_csv

    frame = limesurvey_rows(instrument, form_version=form_version)
    return write_csv(frame, path, sep="\t", bom=True)
