"""Codebooks of an instrument: Markdown for people, Table Schema for machines.

The Table Schema follows Data Package v2 (``$schema`` is the 2.0 profile), so
categorical fields carry ``categories`` (code and label) and
``categoriesOrdered``, and missing codes are labelled ``missingValues``
(``{"value": "-9", "label": "Prefer not to say"}``). The ``frictionless``
package validates both the schema and data files against it.
"""

from __future__ import annotations

import json
from typing import Any

from instruments.schema import Instrument, Item, Scale

__all__ = ["table_schema", "table_schema_json", "markdown_codebook", "TABLE_SCHEMA_PROFILE"]

TABLE_SCHEMA_PROFILE = "https://datapackage.org/profiles/2.0/tableschema.json"
_FIELD_TYPE = {"ordinal": "integer", "nominal": "integer", "text": "string", "date": "date"}


def _missing_values(scale: Scale, lang: str) -> list[dict[str, str]]:
    # a blank cell is missing too (unlabelled: not asked, skipped, or not reached)
    return [{"value": ""}] + [
        {"value": str(c.code), "label": c.label.get(lang, "")} for c in scale.missing
    ]


def _field(inst: Instrument, item: Item, lang: str) -> dict[str, Any]:
    scale = inst.scales[item.scale]
    field: dict[str, Any] = {"name": item.id, "title": item.text.get(lang, "")}
    notes = []
    if item.construct:
        c = inst.construct(item.construct)
        notes.append(f"Construct {c.id} ({c.label})" + (", reverse-keyed" if item.reverse else ""))
    if item.role != "item":
        notes.append(f"role: {item.role}")
    if item.relevant:
        notes.append(f"asked if {item.relevant}")
    if item.role == "attention":
        notes.append(f"instructed answer: {item.expected}")
    if notes:
        field["description"] = "; ".join(notes)
    if scale.type == "numeric":
        field["type"] = "integer" if scale.integer else "number"
        bounds = {k: v for k, v in (("minimum", scale.min), ("maximum", scale.max)) if v is not None}
        if bounds:
            field["constraints"] = {
                k: int(v) if scale.integer and float(v).is_integer() else v for k, v in bounds.items()
            }
    else:
        field["type"] = _FIELD_TYPE[scale.type]
    if scale.is_categorical:
        field["categories"] = [{"value": c.code, "label": c.label.get(lang, "")} for c in scale.categories]
        field["categoriesOrdered"] = scale.ordered
        field["constraints"] = {"enum": scale.codes}
    if scale.missing or scale.type in ("numeric", "ordinal", "nominal"):
        field["missingValues"] = _missing_values(scale, lang)
    # no 'required' constraint: skipped and not-asked items are legitimately blank
    return field


def _collapsed_field(inst: Instrument, item: Item, lang: str) -> dict[str, Any]:
    col = item.collapsed
    scale = inst.scales[item.scale]
    field = {
        "name": col.id,
        "title": f"{item.text.get(lang, '')} (collapsed)",
        "description": col.description or f"{item.id} collapsed into {len(col.groups)} groups",
        "type": "integer",
        "categories": [{"value": g.code, "label": g.label.get(lang, "")} for g in col.groups],
        "categoriesOrdered": False,
        "constraints": {"enum": [g.code for g in col.groups]},
        "missingValues": _missing_values(scale, lang),
    }
    return field


def table_schema(inst: Instrument, *, lang: str | None = None) -> dict[str, Any]:
    """A frictionless Table Schema (v2) for data collected with ``inst``.

    One field per item in questionnaire order, each grouping item followed by
    its collapsed version. Columns are matched by name (``fieldsMatch:
    partial``): exports carry ids and metadata the instrument does not define,
    and raw answers lack the derived collapsed columns, yet every column that
    is an item is checked. That every item column is present is
    ``resilience import``'s check.
    """
    lang = lang or inst.default_language
    fields = []
    for item in inst.items:
        fields.append(_field(inst, item, lang))
        if item.collapsed is not None:
            fields.append(_collapsed_field(inst, item, lang))
    return {
        "$schema": TABLE_SCHEMA_PROFILE,
        "title": f"{inst.title} ({inst.id} {inst.version})",
        "description": inst.description,
        "fields": fields,
        "fieldsMatch": "partial",
        "missingValues": [""],
    }


def table_schema_json(inst: Instrument, *, lang: str | None = None, indent: int = 2) -> str:
    return json.dumps(table_schema(inst, lang=lang), indent=indent, ensure_ascii=False) + "\n"


def _md(text: str | None) -> str:
    """Escape a value for a Markdown table cell."""
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def markdown_codebook(inst: Instrument, *, lang: str | None = None) -> str:
    """A readable codebook: constructs, scales, then every variable by section."""
    lang = lang or inst.default_language
    out: list[str] = []
    add = out.append
    add(f"# {inst.title}: codebook")
    add("")
    add(f"Instrument `{inst.id}` version {inst.version}."
        + (f" Source SHA-256 `{inst.sha256}`." if inst.sha256 else ""))
    add("")
    if inst.description:
        add(inst.description)
        add("")
    langs = []
    for code in inst.languages:
        if code == inst.default_language:
            langs.append(f"`{code}` (default)")
        else:
            t = inst.translations.get(code)
            langs.append(f"`{code}` ({t.status if t else 'no status'})")
    add("Languages: " + ", ".join(langs) + ".")
    add("")

    add("## Constructs")
    add("")
    boxes = any(c.figure1_box for c in inst.constructs)  # crs's Figure 1 boxes; other instruments have none
    add("| Construct | Label |" + (" Figure 1 box |" if boxes else "") + " Kind | Items | Reverse-keyed | Score |")
    add("|---|---|" + ("---|" if boxes else "") + "---|---|---|---|")
    for c in inst.constructs:
        items = inst.items_of(c.id)
        score = c.score + (f" of codes {', '.join(map(str, c.count_codes))}" if c.count_codes else "")
        if c.min_items:
            score += f", needs >= {c.min_items} answered"
        add(f"| `{c.id}` | {_md(c.label)} |" + (f" {_md(c.figure1_box or '')} |" if boxes else "") + f" {c.kind} | "
            f"{', '.join(i.id for i in items)} | {', '.join(i.id for i in items if i.reverse) or '-'} | {score} |")
    add("")
    for c in inst.constructs:
        add(f"- **{c.id}**: {_md(c.definition)}")
    add("")

    syntax = inst.measurement_syntax()
    if syntax:
        add("Measurement model (lavaan syntax):")
        add("")
        add("```")
        add(syntax)
        add("```")
        add("")

    add("## Response scales")
    add("")
    for sid, scale in inst.scales.items():
        head = f"### `{sid}` ({scale.type})"
        add(head)
        add("")
        if scale.description:
            add(scale.description)
            add("")
        if scale.type == "numeric":
            lo = "" if scale.min is None else f"{scale.min:g}"
            hi = "" if scale.max is None else f"{scale.max:g}"
            add(f"Numeric, {'whole numbers' if scale.integer else 'decimals allowed'}, range {lo}..{hi}.")
            add("")
        if scale.categories or scale.missing:
            add("| Code | Label | |")
            add("|---:|---|---|")
            for c in scale.categories:
                add(f"| {c.code} | {_md(c.label.get(lang))} | |")
            for c in scale.missing:
                add(f"| {c.code} | {_md(c.label.get(lang))} | missing |")
            add("")

    add("## Variables")
    add("")
    for section in inst.sections:
        add(f"### {_md(section.title.get(lang))} (`{section.id}`)")
        add("")
        if section.intro:
            add(f"> {_md(section.intro.get(lang))}")
            add("")
        add("| Variable | Question | Scale | Construct | Role | Asked if |")
        add("|---|---|---|---|---|---|")
        for item in section.items:
            construct = item.construct or ""
            if item.reverse:
                construct += " (R)"
            role = item.role + (f", expects {item.expected}" if item.expected is not None else "")
            add(f"| `{item.id}` | {_md(item.text.get(lang))} | `{item.scale}` | {construct} | "
                f"{role} | {_md(item.relevant) and '`' + _md(item.relevant) + '`'} |")
            if item.collapsed is not None:
                col = item.collapsed
                add(f"| `{col.id}` | {_md(item.id)} collapsed: " + "; ".join(
                    f"{g.code} {_md(g.label.get(lang))} = {', '.join(map(str, g.codes))}" for g in col.groups
                ) + " | | | derived | |")
        add("")

    if inst.consent is not None:
        add("## Consent")
        add("")
        add(f"> {_md(inst.consent.text.get(lang))}")
        add("")

    if inst.references:
        add("## References (anchor scales; cited, not copied)")
        add("")
        for r in inst.references:
            link = f" https://doi.org/{r.doi}" if r.doi else (f" {r.url}" if r.url else "")
            anchors = f" [{', '.join(r.constructs)}]" if r.constructs else ""
            add(f"- {_md(r.citation)}{link}{anchors}")
        add("")
    return "\n".join(out)
