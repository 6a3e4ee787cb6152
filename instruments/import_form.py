"""Bring an existing questionnaire into the suite: XLSForm (Kobo, ODK) or a REDCap data dictionary.

``import_form(path)`` reads the form and returns a :class:`FormImport`: the
instrument as plain data (``.instrument``, written as YAML by :meth:`FormImport.write`)
and every part of the form that could not be mapped (``.issues``), each naming
its sheet, row and column, as the form's author sees them in a spreadsheet.

XLSForm
    ``survey``, ``choices`` and ``settings`` sheets; one ``label::Language (xx)``
    column per language (a plain ``label`` is the default language);
    ``select_one`` lists become scales (``appearance: likert`` marks an ordered
    one; negative codes are missing codes), ``integer``/``decimal`` with a
    ``constraint`` of bounds become numeric scales, ``text``/``date`` as they are;
    ``required``, ``relevant`` (``${X} = 1`` -> ``X == 1``) and ``hint`` are kept;
    top-level groups are sections. Nested groups, repeats and ``select_multiple``
    have no place in the instrument format and are refused with their row.
REDCap
    the data dictionary CSV: ``Form Name`` (and ``Section Header``) give the
    sections, ``radio``/``dropdown``/``yesno``/``truefalse`` the scales,
    ``text`` with integer/number validation numeric items, branching logic
    (``[x] = '1'``) the relevance; ``checkbox``, ``calc``, ``file`` and the
    like are refused with their row.

Constructs come from a column of the form (``construct``, or the name given)
or from a naming rule: ``construct_from="prefix"`` puts ``SAF1``, ``SAF2`` in
construct ``SAF``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from instruments.export_xlsform import LANGUAGE_NAMES

__all__ = ["FormIssue", "FormImport", "FormImportError", "import_form", "import_xlsform", "import_redcap"]

# XLSForm metadata rows: recorded by the platform, not questions
_METADATA = {"start", "end", "today", "deviceid", "phonenumber", "username", "email", "audit", "simserial",
             "subscriberid", "start-geopoint", "background-audio", "calculate", "hidden"}
_NAMES_TO_CODES = {v.lower(): k for k, v in LANGUAGE_NAMES.items()}


@dataclass(frozen=True)
class FormIssue:
    """A part of the form that could not be mapped: where it is, what it is, why."""

    sheet: str
    row: int | None
    column: str
    message: str
    severity: str = "warning"  # "error": the form cannot be imported as it is

    def __str__(self) -> str:
        where = self.sheet + (f" row {self.row}" if self.row is not None else "") + (
            f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "message": self.message,
                "severity": self.severity}


class FormImportError(ValueError):
    """The form cannot be read or holds something the instrument format cannot express."""

    def __init__(self, issues: list[FormIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class FormImport:
    """An imported form: the instrument (plain data) and what could not be mapped."""

    instrument: dict[str, Any]
    issues: list[FormIssue] = field(default_factory=list)
    source: str = ""

    @property
    def errors(self) -> list[FormIssue]:
        return [i for i in self.issues if i.severity == "error"]

    def summary(self) -> str:
        inst = self.instrument
        n_items = sum(len(s["items"]) for s in inst["sections"])
        lines = [f"{self.source}: {len(inst['sections'])} section(s), {n_items} item(s), "
                 f"{len(inst['constructs'])} construct(s), languages {', '.join(inst['languages'])}"]
        lines += [f"  {i.severity}: {i}" for i in self.issues]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "instrument": self.instrument, "issues": [i.to_dict() for i in self.issues]}

    def yaml(self) -> str:
        import io

        from ruamel.yaml import YAML

        y = YAML()
        y.default_flow_style = False
        y.width = 100
        buf = io.StringIO()
        buf.write(f"# Imported from {Path(self.source).name} by `resilience instrument import`.\n"
                  "# Check the constructs (label, definition), reverse-keyed items and missing codes.\n")
        y.dump(self.instrument, buf)
        return buf.getvalue()

    def write(self, path: str | Path) -> Path:
        """Write the instrument YAML and check that the suite loads it."""
        from instruments import load_instrument

        path = Path(path)
        path.write_text(self.yaml(), encoding="utf-8")
        load_instrument(path)  # raises InstrumentError naming file:line if the import made something invalid
        return path


def import_form(path: str | Path, *, construct_from: str | None = None, construct_column: str = "construct",
                language: str = "en", id: str | None = None) -> FormImport:  # noqa: A002
    """An XLSForm (.xlsx/.xls) or a REDCap data dictionary (.csv), by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise FormImportError([FormIssue(path.name, None, "", "file not found", "error")])
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        return import_xlsform(path, construct_from=construct_from, construct_column=construct_column, id=id)
    if path.suffix.lower() == ".csv":
        return import_redcap(path, construct_from=construct_from, construct_column=construct_column,
                             language=language, id=id)
    raise FormImportError([FormIssue(path.name, None, "", f"unknown form type {path.suffix!r}: give an XLSForm "
                                     "(.xlsx) or a REDCap data dictionary (.csv)", "error")])


# ---------------------------------------------------------------- shared

class _Builder:
    """Collects sections, items, scales and constructs, and the issues met on the way."""

    def __init__(self, source: str, construct_from: str | None):
        self.source = source
        self.construct_from = construct_from
        self.issues: list[FormIssue] = []
        self.scales: dict[str, dict] = {}
        self.sections: list[dict] = []
        self.constructs: dict[str, dict] = {}

    def issue(self, sheet, row, column, message, severity="warning"):
        self.issues.append(FormIssue(sheet, row, column, message, severity))

    def in_form_order(self) -> list[FormIssue]:
        """The issues sheet by sheet (survey first), row by row, as the user reads the form."""
        rank = {"survey": 0, "choices": 1, "settings": 2}
        return sorted(self.issues, key=lambda i: (rank.get(i.sheet, 3), i.row is None, i.row or 0))

    def section(self, sid: str, title: dict) -> dict:
        taken = {sec["id"] for sec in self.sections}
        base, k = sid, 1
        while sid in taken:  # questions before and after a group: two untitled sections, two ids
            k += 1
            sid = f"{base}_{k}"
        sec = {"id": sid, "title": title, "items": []}
        self.sections.append(sec)
        return sec

    def construct_of(self, name: str, given: str) -> str | None:
        if given:
            cid = given.strip()
        elif self.construct_from == "prefix":
            m = re.fullmatch(r"([A-Za-z][A-Za-z_]*?)_?\d+", name)
            cid = m.group(1) if m else ""
        else:
            cid = ""
        if not cid:
            return None
        self.constructs.setdefault(cid, {"id": cid, "label": cid,
                                         "definition": f"{cid} (imported: write its definition)"})
        return cid

    def numeric_scale(self, integer: bool, lo, hi, missing: list[int]) -> str:
        key = ("integer" if integer else "decimal", lo, hi, tuple(missing))
        for sid, sc in self.scales.items():
            if sc.get("_key") == key:
                return sid
        sid = f"{key[0]}{'' if lo is None else '_' + _num_id(lo)}{'' if hi is None else '_' + _num_id(hi)}"
        scale: dict[str, Any] = {"_key": key, "type": "numeric", "integer": integer}
        if lo is not None:
            scale["min"] = lo
        if hi is not None:
            scale["max"] = hi
        if missing:
            scale["missing"] = [{"code": c, "label": {"_": f"Missing ({c})"}} for c in missing]
        self.scales[sid] = scale
        return sid

    def plain_scale(self, kind: str) -> str:
        self.scales.setdefault(kind, {"type": kind})
        return kind

    def _fill_languages(self, scales: dict, languages: list[str], default: str) -> None:
        """Every text in every language (the format requires it); what was filled is reported."""
        for sec in self.sections:
            for key in ("title", "intro"):
                filled = _fill(sec[key], languages, default) if key in sec else []
                if filled:
                    self.issue("survey", None, "label", f"section '{sec['id']}' {key} has no {', '.join(filled)} "
                               f"wording; the {default} text stands in")
            for it in sec["items"]:
                for key in ("text", "help"):
                    if key in it:
                        filled = _fill(it[key], languages, default)
                        if filled:
                            self.issue("survey", None, "label" if key == "text" else "hint",
                                       f"'{it['id']}' {'label' if key == 'text' else 'hint'} has no {', '.join(filled)} "
                                       f"wording; the {default} text stands in until it is translated")
        for sid, sc in scales.items():
            for cat in sc.get("categories", []) + sc.get("missing", []):
                filled = _fill(cat["label"], languages, default)
                if filled:
                    self.issue("choices", None, "label", f"choice {cat['code']} of '{sid}' has no {', '.join(filled)} "
                               f"label; the {default} label stands in")

    def instrument(self, *, id: str, title: str, version: str, languages: list[str], default: str) -> dict:  # noqa: A002
        scales = {}
        for sid, sc in self.scales.items():
            sc = {k: v for k, v in sc.items() if not k.startswith("_")}
            for part in ("categories", "missing"):
                for cat in sc.get(part, []):
                    if "_" in cat["label"]:  # a label no language gave (numeric missing codes)
                        text = cat["label"].pop("_")
                        cat["label"] = {lang: text for lang in languages}
            scales[sid] = sc
        used = {it["scale"] for s in self.sections for it in s["items"]}
        # a latent construct needs three items: fewer (an attention check ATTN1 under the prefix
        # rule) stay plain items, and the report says so
        members: dict[str, list[dict]] = {}
        for sec in self.sections:
            for it in sec["items"]:
                if it.get("construct"):
                    members.setdefault(it["construct"], []).append(it)
        for cid in list(self.constructs):
            items = members.get(cid, [])
            if len(items) < 3:
                for it in items:
                    del it["construct"]
                    it.pop("reverse", None)
                    it["role"] = "demographic"
                self.constructs.pop(cid, None)
                self.issue("survey", None, "", f"construct '{cid}' would have {len(items)} item(s) "
                           f"({', '.join(it['id'] for it in items)}); a construct needs at least 3, so they are "
                           "plain items")
        self._fill_languages(scales, languages, default)
        out = {"id": id, "version": version, "title": title, "languages": languages, "default_language": default}
        others = [lang for lang in languages if lang != default]
        if others:  # imported wording is a draft until someone who reads it signs it off
            out["translations"] = {lang: {"status": "draft"} for lang in others}
        return {**out, "scales": {k: v for k, v in scales.items() if k in used},
                "constructs": list(self.constructs.values()), "sections": [s for s in self.sections if s["items"]]}


def _fill(text: dict, languages: list[str], default: str) -> list[str]:
    """Languages a text lacks get the default language's wording; returns those filled."""
    missing = [lang for lang in languages if not text.get(lang)]
    source = text.get(default) or next((v for v in text.values() if v), "")
    for lang in missing:
        text[lang] = source
    return missing




def _num_id(v: float) -> str:
    return (f"{v:g}").replace("-", "m").replace(".", "p")


def _number(text: str):
    v = float(text)
    return int(v) if v.is_integer() else v


def _safe_id(name: str) -> str:
    out = re.sub(r"\W", "_", name.strip())
    return out if re.match(r"[A-Za-z]", out) else f"f_{out}"


# ---------------------------------------------------------------- XLSForm

_LANG_COL = re.compile(r"^(label|hint|constraint_message|constraint message)(?:::(.+))?$", re.IGNORECASE)


def _language(spec: str | None, default: str) -> str:
    """``English (en)`` -> en; ``English`` -> en; none -> the default language."""
    if not spec:
        return default
    m = re.search(r"\(([A-Za-z]{2,3}(?:-[A-Za-z]+)?)\)\s*$", spec)
    if m:
        return m.group(1).lower()
    return _NAMES_TO_CODES.get(spec.strip().lower(), re.sub(r"\W+", "_", spec.strip().lower()))


def _xlsform_relevant(text: str) -> str:
    """ODK's ``${X} = 1 and selected(${Y}, '2')`` as the suite's ``X == 1 and Y == 2``."""
    out = re.sub(r"selected\(\s*\$\{(\w+)\}\s*,\s*'([^']*)'\s*\)", r"${\1} = '\2'", text)
    out = re.sub(r"\$\{(\w+)\}", r"\1", out)
    out = re.sub(r"(?<![<>!=])=(?!=)", "==", out)
    out = re.sub(r"'(-?\d+(?:\.\d+)?)'", r"\1", out)  # choice codes compare as numbers
    return out


_BOUND = re.compile(r"\.\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)")
_MISSING_OK = re.compile(r"\.\s*=\s*(-?\d+)")


def _bounds(constraint: str) -> tuple[Any, Any, list[int], bool]:
    """(min, max, missing codes, understood) of a constraint the suite's export writes."""
    lo = hi = None
    rest = constraint
    for op, v in _BOUND.findall(constraint):
        if op in (">=", ">"):
            lo = _number(v)
        else:
            hi = _number(v)
    missing = [int(v) for v in _MISSING_OK.findall(constraint)]
    rest = _MISSING_OK.sub("", _BOUND.sub("", rest))
    understood = not re.sub(r"[\s()]|\band\b|\bor\b", "", rest)
    return lo, hi, missing, understood


def import_xlsform(path: str | Path, *, construct_from: str | None = None, construct_column: str = "construct",
                   id: str | None = None) -> FormImport:  # noqa: A002
    """An XLSForm workbook as an instrument (see the module docs)."""
    path = Path(path)
    try:
        book = pd.read_excel(path, sheet_name=None, dtype=str, keep_default_na=False)
    except Exception as exc:  # not a workbook, damaged, encrypted
        raise FormImportError([FormIssue(path.name, None, "", f"cannot be read as an XLSForm workbook "
                                         f"({type(exc).__name__}: {exc})", "error")]) from None
    sheets = {k.strip().lower(): v for k, v in book.items()}
    if "survey" not in sheets:
        raise FormImportError([FormIssue(path.name, None, "", "no 'survey' sheet: not an XLSForm", "error")])
    survey = sheets["survey"].rename(columns=lambda c: str(c).strip())
    choices = sheets.get("choices", pd.DataFrame(columns=["list_name", "name"])).rename(columns=lambda c: str(c).strip())
    settings = sheets.get("settings", pd.DataFrame())
    setting = {str(k).strip(): str(v).strip() for k, v in (settings.iloc[0].items() if len(settings) else [])}
    default = _language(setting.get("default_language"), "en")
    b = _Builder(str(path), construct_from)

    languages = []
    for frame in (survey, choices):
        for col in frame.columns:
            m = _LANG_COL.match(col)
            if m:
                lang = _language(m.group(2), default)
                if lang not in languages:
                    languages.append(lang)
    if not languages:
        languages = [default]
    if default not in languages:
        languages.insert(0, default)

    def texts(frame_row, prefix: str) -> dict[str, str]:
        out = {}
        for col, value in frame_row.items():
            m = _LANG_COL.match(col)
            if m and m.group(1).lower().replace(" ", "_") == prefix and str(value).strip():
                out[_language(m.group(2), default)] = str(value).strip()
        return out

    # choices: one scale per list; codes are the choice names
    lists: dict[str, list[tuple[int, dict]]] = {}
    for i, row in choices.iterrows():
        name, code = str(row.get("list_name", "")).strip(), str(row.get("name", "")).strip()
        if not name:
            continue
        try:
            value = int(code)
        except ValueError:
            b.issue("choices", i + 2, "name", f"choice '{code}' of list '{name}' is not a whole-number code: "
                    "the suite stores answers as numeric codes; the list was left out", "error")
            lists[name] = None  # type: ignore[assignment]
            continue
        if lists.get(name, []) is not None:
            lists.setdefault(name, []).append((value, texts(row, "label")))

    sections: list[dict] = []
    current = None
    depth = 0
    # a group's `relevant` applies to every question in it: each enclosing group's condition, where it is written
    group_conditions: list[tuple | None] = []
    repeat = []  # the repeats we are inside: their questions are left out with them
    consent_text = None
    for i, row in survey.iterrows():
        r = i + 2  # spreadsheet row: the header is row 1
        kind = str(row.get("type", "")).strip()
        name = str(row.get("name", "")).strip()
        if not kind:
            continue
        base = kind.split()[0].lower()
        if base in _METADATA:
            if base == "calculate":
                b.issue("survey", r, "type", f"calculate '{name}' is not a question and was left out")
            continue
        if base in ("begin_repeat", "begin repeat"):
            b.issue("survey", r, "type", f"repeat '{name}' asks its questions a varying number of times, which "
                    "the instrument format cannot hold (one answer per item and respondent); it and its "
                    "questions were left out", "error")
            repeat.append(name)
            continue
        if base in ("end_repeat", "end repeat"):
            if repeat:
                repeat.pop()
            continue
        if repeat:
            continue
        if base in ("begin_group", "begin group"):
            depth += 1
            condition = str(row.get("relevant", "")).strip()
            group_conditions.append((r, "relevant", condition, _xlsform_relevant(condition)) if condition else None)
            if depth > 1:
                b.issue("survey", r, "type", f"group '{name}' is nested in group '{current['id']}'; the instrument "
                        f"format has one level of sections, so its questions were put in '{current['id']}'", "error")
                continue
            current = b.section(_safe_id(name or f"section{len(b.sections) + 1}"), texts(row, "label") or {default: name})
            continue
        if base in ("end_group", "end group"):
            depth = max(depth - 1, 0)
            if group_conditions:
                group_conditions.pop()
            if depth == 0:
                current = None
            continue
        if base == "note":
            label = texts(row, "label")
            if name == "consent_text":
                consent_text = label
            elif current is not None and name == f"{current['id']}_intro":
                current["intro"] = label
            else:
                b.issue("survey", r, "type", f"note '{name}' shows text, it is not a question; left out")
            continue
        if current is None:
            current = b.section("main", {lang: "Questions" for lang in languages})
        item: dict[str, Any] = {"id": _safe_id(name), "text": texts(row, "label") or {default: name}}
        if item["id"] != name:
            b.issue("survey", r, "name", f"name '{name}' became '{item['id']}' (letters, digits, underscore)")
        if base == "select_one" or kind.lower().startswith("select_one_from_file"):
            parts = kind.split()
            list_name = parts[1] if len(parts) > 1 else ""
            cats = lists.get(list_name)
            if base != "select_one" or cats is None:
                b.issue("survey", r, "type", f"'{kind}': list '{list_name}' is missing or not coded with numbers; "
                        f"item '{name}' left out", "error")
                continue
            ordered = str(row.get("appearance", "")).strip().lower().startswith("likert")
            sid = _safe_id(list_name)
            scale = b.scales.setdefault(sid, {"type": "ordinal" if ordered else "nominal", "categories": [],
                                             "missing": []})
            if ordered and scale["type"] != "ordinal":
                scale["type"] = "ordinal"
            if not scale["categories"] and not scale["missing"]:
                for code, label in cats:
                    entry = {"code": code, "label": label or {default: str(code)}}
                    (scale["missing"] if code < 0 else scale["categories"]).append(entry)
                if not scale["missing"]:
                    del scale["missing"]
            item["scale"] = sid
        elif base in ("integer", "decimal"):
            constraint = str(row.get("constraint", "")).strip()
            lo = hi = None
            missing: list[int] = []
            if constraint:
                lo, hi, missing, understood = _bounds(constraint)
                if not understood:
                    b.issue("survey", r, "constraint", f"constraint '{constraint}' of '{name}' is more than bounds "
                            "and allowed codes; only its bounds were kept")
            item["scale"] = b.numeric_scale(base == "integer", lo, hi, missing)
        elif base in ("text", "date"):
            item["scale"] = b.plain_scale(base)
            if str(row.get("constraint", "")).strip():
                b.issue("survey", r, "constraint", f"the constraint of {base} item '{name}' was left out")
        elif base in ("select_multiple", "rank"):
            b.issue("survey", r, "type", f"'{kind}' ('{name}') takes several answers; the instrument format has one "
                    "code per item: split it into yes/no items", "error")
            continue
        else:
            b.issue("survey", r, "type", f"question type '{kind}' ('{name}') has no counterpart in the instrument "
                    "format; left out", "error")
            continue
        hint = texts(row, "hint")
        if hint:
            item["help"] = hint
        item["required"] = str(row.get("required", "")).strip().lower() in ("yes", "true", "true()", "1", "y")
        relevant = str(row.get("relevant", "")).strip()
        item["_conditions"] = [c for c in group_conditions if c] + (
            [(r, "relevant", relevant, _xlsform_relevant(relevant))] if relevant else [])
        cid = b.construct_of(item["id"], str(row.get(construct_column, "")).strip())
        if cid:
            item["construct"] = cid
            if str(row.get("reverse", "")).strip().lower() in ("yes", "true", "1", "y"):
                item["reverse"] = True
        else:
            item["role"] = "demographic"
        current["items"].append(item)
    _apply_conditions(b, "survey")
    order = {_safe_id(name): k for k, name in enumerate(lists)}  # scales in the choices sheet's order
    b.scales = dict(sorted(b.scales.items(), key=lambda kv: order.get(kv[0], len(order))))
    version = setting.get("version", "")
    inst = b.instrument(id=id or _safe_id(setting.get("form_id") or path.stem), title=setting.get("form_title") or path.stem,
                        version="1.0.0", languages=languages, default=default)
    if version:
        inst["description"] = f"Imported from XLSForm version {version}."
    if consent_text:
        inst["consent"] = {"text": consent_text}
    _check_has_items(b, inst, "survey")
    return FormImport(inst, b.in_form_order(), str(path))


def _apply_conditions(b: _Builder, sheet: str) -> None:
    """Each question's own condition and its groups', joined by `and`. A condition that cannot be
    translated, or names a question that was not imported, is reported at its row and left out."""
    from instruments.relevance import referenced_items

    known = {item["id"] for sec in b.sections for item in sec["items"]}
    reported: set[int] = set()  # a group's condition: reported once, not for each of its questions
    for sec in b.sections:
        for item in sec["items"]:
            kept = []
            for row, column, original, converted in item.pop("_conditions", []):
                converted = _relevance(b, sheet, row, column, original, converted, quiet=row in reported)
                if converted is not None:
                    lost = [n for n in referenced_items(converted) if n not in known]
                    if lost and row not in reported:
                        b.issue(sheet, row, column, f"condition '{original}' names {', '.join(map(repr, lost))}, "
                                "which is not an imported question (left out, see its own row, or not in the form); "
                                "the condition was left out, so the question is always asked", "error")
                    converted = None if lost else converted
                if converted is None:
                    reported.add(row)
                    continue
                kept.append(converted)
            if kept:
                item["relevant"] = kept[0] if len(kept) == 1 else " and ".join(f"({c})" for c in kept)


def _relevance(b: _Builder, sheet: str, row: int, column: str, original: str, converted: str,
               quiet: bool = False) -> str | None:
    from instruments.relevance import RelevanceSyntaxError, parse

    try:
        parse(converted)
    except RelevanceSyntaxError as exc:
        if quiet:
            return None
        b.issue(sheet, row, column, f"condition '{original}' could not be translated ({exc}); left out, the "
                "item is always asked", "error")
        return None
    return converted


def _check_has_items(b: _Builder, inst: dict, sheet: str) -> None:
    """A form from which no question could be imported is an error, with every reason found."""
    if not inst["sections"]:
        raise FormImportError(b.issues + [FormIssue(sheet, None, "", "no question could be imported", "error")])


# ---------------------------------------------------------------- REDCap

_REDCAP = {"name": "Variable / Field Name", "form": "Form Name", "header": "Section Header", "type": "Field Type",
           "label": "Field Label", "choices": "Choices, Calculations, OR Slider Labels", "note": "Field Note",
           "validation": "Text Validation Type OR Show Slider Number", "min": "Text Validation Min",
           "max": "Text Validation Max", "logic": "Branching Logic (Show field only if...)",
           "required": "Required Field?", "annotation": "Field Annotation"}


def _redcap_logic(text: str) -> str:
    """REDCap's ``[x] = '1' and [y] <> '2'`` as the suite's ``x == 1 and y != 2``."""
    out = re.sub(r"\[(\w+)\]", r"\1", text)
    out = out.replace("<>", "!=")
    out = re.sub(r"(?<![<>!=])=(?!=)", "==", out)
    return re.sub(r"[\"'](-?\d+(?:\.\d+)?)[\"']", r"\1", out)


def import_redcap(path: str | Path, *, construct_from: str | None = None, construct_column: str = "construct",
                  language: str = "en", id: str | None = None) -> FormImport:  # noqa: A002
    """A REDCap data dictionary CSV as an instrument (one language: ``language``)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:
        raise FormImportError([FormIssue(path.name, None, "", f"cannot be read as CSV ({type(exc).__name__}: {exc})",
                                         "error")]) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    lower = {c.lower(): c for c in frame.columns}
    cols = {k: lower.get(v.lower()) for k, v in _REDCAP.items()}  # REDCap varies the case of its headers
    if cols["name"] is None or cols["type"] is None:
        raise FormImportError([FormIssue(path.name, None, "", "not a REDCap data dictionary: no 'Variable / Field "
                                         "Name' and 'Field Type' columns", "error")])
    sheet = path.name
    b = _Builder(str(path), construct_from)
    get = lambda row, k: str(row[cols[k]]).strip() if cols.get(k) else ""  # noqa: E731
    current = None
    consent_text = None
    yesno = {"yesno": [(1, "Yes"), (0, "No")], "truefalse": [(1, "True"), (0, "False")]}
    for i, row in frame.iterrows():
        r = i + 2
        name, kind = get(row, "name"), get(row, "type").lower()
        form, header = get(row, "form"), get(row, "header")
        if name in ("record_id", "form_version") or (i == 0 and kind == "text" and name.endswith("_id")):
            continue  # REDCap's record id and the suite's form-version stamp
        if current is None or current.get("_form") != form or header:
            title, _, intro = header.partition("\n")
            sid = _safe_id(form or "main") + (f"_{len(b.sections) + 1}" if any(
                s.get("_form") == form for s in b.sections) else "")
            current = b.section(sid, {language: title.strip() or form or "Questions"})
            current["_form"] = form
            if intro.strip():
                current["intro"] = {language: intro.strip()}
        if kind == "descriptive":
            if name == "consent_text":
                consent_text = {language: get(row, "label")}
            else:
                b.issue(sheet, r, _REDCAP["type"], f"descriptive field '{name}' shows text, it is not a question; "
                        "left out")
            continue
        item: dict[str, Any] = {"id": _safe_id(name), "text": {language: get(row, "label") or name}}
        if kind in ("radio", "dropdown", "yesno", "truefalse"):
            if kind in yesno:
                pairs = yesno[kind]
                sid = kind
            else:
                pairs = []
                for part in [p for p in get(row, "choices").split("|") if p.strip()]:
                    code, _, label = part.partition(",")
                    try:
                        pairs.append((int(code.strip()), label.strip()))
                    except ValueError:
                        b.issue(sheet, r, _REDCAP["choices"], f"choice '{part.strip()}' of '{name}' is not coded "
                                "with a whole number; item left out", "error")
                        pairs = None
                        break
                if pairs is None:
                    continue
                sid = None
                for other, sc in b.scales.items():  # the same list of choices is the same scale
                    if sc.get("_pairs") == pairs:
                        sid = other
                if sid is None:
                    sid = f"{_safe_id(name)}_choices"
            ordered = get(row, "annotation").lower().find("ordinal") >= 0 or row.get(
                "Custom Alignment", "").strip().upper() in ("RH", "LH")
            if sid not in b.scales:
                b.scales[sid] = {"_pairs": pairs, "type": "ordinal" if ordered else "nominal",
                                 "categories": [{"code": c, "label": {language: t}} for c, t in pairs if c >= 0]}
                miss = [{"code": c, "label": {language: t}} for c, t in pairs if c < 0]
                if miss:
                    b.scales[sid]["missing"] = miss
            item["scale"] = sid
        elif kind in ("text", "notes"):
            valid = get(row, "validation").lower()
            if valid in ("integer", "number", "number_1dp", "number_2dp"):
                lo = _number(get(row, "min")) if get(row, "min") else None
                hi = _number(get(row, "max")) if get(row, "max") else None
                item["scale"] = b.numeric_scale(valid == "integer", lo, hi, [])
            elif valid.startswith("date"):
                item["scale"] = b.plain_scale("date")
            else:
                if valid:
                    b.issue(sheet, r, _REDCAP["validation"], f"validation '{valid}' of '{name}' was left out")
                item["scale"] = b.plain_scale("text")
                if kind == "text":  # a one-line answer (an area, a group): what the suite writes for grouping text
                    item["role"] = "grouping"
        elif kind == "slider":
            item["scale"] = b.numeric_scale(True, 0, 100, [])
        else:
            b.issue(sheet, r, _REDCAP["type"], f"field type '{kind}' ('{name}') has no counterpart in the instrument "
                    "format" + ("; split a checkbox into yes/no items" if kind == "checkbox" else "") + "; left out",
                    "error")
            continue
        note = get(row, "note")
        if note:
            item["help"] = {language: note}
        item["required"] = get(row, "required").lower() in ("y", "yes", "1")
        logic = get(row, "logic")
        if logic:
            item["_conditions"] = [(r, _REDCAP["logic"], logic, _redcap_logic(logic))]
        annotation = get(row, "annotation")
        m = re.match(r"attention check: expected (-?\d+)", annotation)
        if m:
            item["role"], item["expected"] = "attention", int(m.group(1))
        cid = b.construct_of(item["id"], str(row.get(construct_column, "")).strip()) if "role" not in item else None
        if cid:
            item["construct"] = cid
        elif "role" not in item:
            item["role"] = "demographic"
        current["items"].append(item)
    for s in b.sections:
        s.pop("_form", None)
    _apply_conditions(b, sheet)
    forms = list(dict.fromkeys(str(f).strip() for f in frame[cols["form"]] if str(f).strip())) if cols["form"] else []
    name = forms[0] if len(forms) == 1 else path.stem  # one REDCap instrument: the suite's export names it by id
    inst = b.instrument(id=id or _safe_id(name), title=name, version="1.0.0", languages=[language],
                        default=language)
    if consent_text:
        inst["consent"] = {"text": consent_text}
    _check_has_items(b, inst, sheet)
    return FormImport(inst, b.in_form_order(), str(path))
