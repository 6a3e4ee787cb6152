"""REDCap data dictionary (the 18-column CSV REDCap's Data Dictionary upload takes).

One REDCap instrument (form) named after the instrument id; each section
starts with a ``Section Header``; choices are written ``1, Label | 2, Label``
(missing codes included, written ``-9, Prefer not to say``); relevance
conditions become branching logic (``[consent] = '1'``); required items get
``y``; numeric scales get ``integer``/``number`` validation with min and max.
REDCap field names are lower case. A hidden ``form_version`` field
(``@HIDDEN @DEFAULT``) stamps each record with the form version, so records
from different versions can be told apart after export.

A dictionary holds one language: ``language=`` picks it (the default language
otherwise); REDCap's Multi-Language Management takes the other languages.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from instruments.relevance import to_redcap

__all__ = ["REDCAP_COLUMNS", "redcap_dictionary", "export_redcap"]

REDCAP_COLUMNS = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]


def _choices(scale, lang: str) -> str:
    cats = [*scale.categories, *scale.missing]
    return " | ".join(f"{c.code}, {c.label.get(lang, '')}" for c in cats)


def redcap_dictionary(instrument, *, language: str | None = None, form_version: str | None = None) -> pd.DataFrame:
    """The data dictionary as a DataFrame with :data:`REDCAP_COLUMNS`."""
    lang = language or instrument.default_language
    form = instrument.id.lower()
    rows = [{
        "Variable / Field Name": "record_id", "Form Name": form, "Field Type": "text",
        "Field Label": "Record ID",
    }]
    if instrument.consent is not None:
        rows.append({"Variable / Field Name": "consent_text", "Form Name": form, "Field Type": "descriptive",
                     "Field Label": instrument.consent.text.get(lang, "")})
    for section in instrument.sections:
        header = section.title.get(lang, "")
        if section.intro:
            header += "\n" + section.intro.get(lang, "")
        for k, it in enumerate(section.items):
            scale = instrument.scales[it.scale]
            row = {
                "Variable / Field Name": it.id.lower(),
                "Form Name": form,
                "Section Header": header if k == 0 else "",
                "Field Label": it.text.get(lang, ""),
                "Field Note": (it.help or {}).get(lang, ""),
                "Required Field?": "y" if it.required else "",
                "Branching Logic (Show field only if...)": to_redcap(it.relevant) if it.relevant else "",
            }
            if scale.is_categorical:
                n = len(scale.categories) + len(scale.missing)
                row["Field Type"] = "dropdown" if n > 8 else "radio"
                row["Choices, Calculations, OR Slider Labels"] = _choices(scale, lang)
                if scale.type == "ordinal" and row["Field Type"] == "radio":
                    row["Custom Alignment"] = "RH"  # answers side by side, as a Likert row
            elif scale.type == "numeric":
                row["Field Type"] = "text"
                row["Text Validation Type OR Show Slider Number"] = "integer" if scale.integer else "number"
                row["Text Validation Min"] = "" if scale.min is None else f"{scale.min:g}"
                row["Text Validation Max"] = "" if scale.max is None else f"{scale.max:g}"
            elif scale.type == "date":
                row["Field Type"] = "text"
                row["Text Validation Type OR Show Slider Number"] = "date_ymd"
            else:
                row["Field Type"] = "notes" if it.role != "grouping" else "text"
            if it.role == "attention":
                row["Field Annotation"] = f"attention check: expected {it.expected}"
            rows.append(row)
    rows.append({
        "Variable / Field Name": "form_version", "Form Name": form, "Field Type": "text",
        "Field Label": "Form version",
        "Field Annotation": f"@HIDDEN @READONLY @DEFAULT='{form_version or instrument.version}'",
    })
    return pd.DataFrame(rows).reindex(columns=REDCAP_COLUMNS).fillna("")


def export_redcap(instrument, path: str | Path, *, language: str | None = None,
                  form_version: str | None = None) -> Path:
    """Write the dictionary CSV (UTF-8; formula-like cells neutralised)."""
    from instruments.export_data import write_csv

    frame = redcap_dictionary(instrument, language=language, form_version=form_version)
    # choices ("-9, ..."), logic and action tags ("@HIDDEN") are REDCap syntax from the
    # instrument's author; every other cell is neutralised against formula injection
    return write_csv(frame, path, exempt=("Choices, Calculations, OR Slider Labels",
                                          "Branching Logic (Show field only if...)", "Field Annotation"))
