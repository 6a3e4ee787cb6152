"""Load and check instrument definitions (YAML in, :class:`Instrument` out).

The loader never stops at the first problem. It reads the file safely (no YAML
tags, no code), keeps the line and column of every node, validates each part
(scale, construct, section, item ...) on its own so that one broken item does
not hide the problems of the others, expands repeated-item templates, then runs
the cross-reference checks. Every problem becomes an
:class:`~instruments.errors.InstrumentIssue` located as
``crs.yaml:41:5 sections[3].items[0].scale``.

    >>> from instruments import load_instrument, validate_instrument
    >>> report = validate_instrument("instruments/library/crs.yaml")  # doctest: +SKIP
    >>> report.valid                                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import difflib
import hashlib
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError, create_model

from instruments import relevance as rel
from instruments.errors import InstrumentError, InstrumentIssue, InstrumentReport, InstrumentWarning, format_path
from instruments.schema import (
    Collapse,
    CollapseGroup,
    Consent,
    Construct,
    Instrument,
    Item,
    Reference,
    Repeat,
    RepeatEntry,
    Scale,
    Section,
    Translation,
    StrictModel,
)

__all__ = [
    "load_instrument",
    "validate_instrument",
    "parse_instrument",
    "library_path",
    "library_instruments",
    "ID_PATTERN",
    "REDCAP_MAX_ID",
]

#: Ids valid in XLSForm, REDCap, SPSS, Stata and R alike.
ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: REDCap's advice for variable names; longer ids only warn.
REDCAP_MAX_ID = 26
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
_MAX_NODES = 200_000  # guards against alias bombs ("billion laughs")
LIBRARY = Path(__file__).parent / "library"

Path_ = tuple  # a location inside the document, e.g. ("sections", 0, "items", 2, "scale")


# ---------------------------------------------------------------------------
# library
# ---------------------------------------------------------------------------

def library_path(name: str) -> Path:
    """Path of a shipped instrument, e.g. ``library_path("crs")``."""
    return LIBRARY / f"{name}.yaml"


def library_instruments() -> list[str]:
    return sorted(p.stem for p in LIBRARY.glob("*.yaml"))


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists() and p.suffix == "" and library_path(str(path)).exists():
        return library_path(str(path))
    return p


# ---------------------------------------------------------------------------
# reading YAML with positions
# ---------------------------------------------------------------------------

class _Positions:
    """Line/column (1-based) of every value and mapping key, by document path."""

    def __init__(self) -> None:
        self.value: dict[Path_, tuple[int, int]] = {}
        self.key: dict[Path_, tuple[int, int]] = {}
        self.quoted: dict[Path_, bool] = {}
        self.containers: set[Path_] = set()

    def locate(self, path: Path_, *, key: bool = False) -> tuple[int | None, int | None]:
        """Position of ``path``, or of its nearest ancestor that exists.

        A scalar is located at its value (``scale: likert7`` points at ``likert7``);
        a mapping or list at its key, which is where a reader looks for it.
        """
        path = tuple(path)
        if (key or path in self.containers) and path in self.key:
            return self.key[path]
        while True:
            if path in self.value:
                return self.value[path]
            if path in self.key:
                return self.key[path]
            if not path:
                return None, None
            path = path[:-1]


class _Reader:
    """Builds plain Python data from a composed YAML node tree, recording positions."""

    _PLAIN_TAGS = {
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
        "tag:yaml.org,2002:map",
        "tag:yaml.org,2002:seq",
        "tag:yaml.org,2002:merge",
        "tag:yaml.org,2002:value",  # libyaml's tag for a plain "="
    }

    def __init__(self, issue) -> None:
        self.pos = _Positions()
        self.issue = issue
        self.n_nodes = 0

    def build(self, node, path: Path_ = ()) -> Any:
        self.n_nodes += 1
        if self.n_nodes > _MAX_NODES:
            raise _TooLarge()
        mark = node.start_mark
        self.pos.value.setdefault(path, (mark.line + 1, mark.column + 1))
        tag = str(node.tag)
        if tag not in self._PLAIN_TAGS:
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            self.issue(
                "yaml-tag-not-allowed",
                f"YAML tag '{shown}' is not allowed: instruments are plain data (safe YAML only)",
                path,
            )
            return None
        kind = type(node).__name__  # the same node classes in ruamel.yaml and PyYAML
        if kind == "ScalarNode":
            self.pos.quoted[path] = node.style in ("'", '"')
            return self._scalar(tag, node.value)
        if kind in ("SequenceNode", "MappingNode"):
            self.pos.containers.add(path)
        if kind == "SequenceNode":
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        if kind == "MappingNode":
            return self._mapping(node, path)
        return None

    @staticmethod
    def _scalar(tag: str, value: str) -> Any:
        """A plain value from a resolved scalar, with YAML 1.2 meanings.

        libyaml resolves with YAML 1.1 rules, where ``no``, ``yes``, ``on`` and
        ``off`` are booleans and ``1:20`` is a number; read them as text, as
        YAML 1.2 does (so a label ``No`` stays the word No).
        """
        kind = tag.rsplit(":", 1)[-1]
        try:
            if kind == "int" and ":" not in value:
                v = value.replace("_", "")
                try:
                    return int(v, 10)
                except ValueError:
                    return int(v, 0)
            if kind == "float" and ":" not in value:
                low = value.lower().replace("_", "")
                if low.endswith(".inf"):
                    return float("-inf") if low.startswith("-") else float("inf")
                if low == ".nan":
                    return float("nan")
                return float(low)
        except ValueError:
            return value
        if kind == "bool" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "null":
            return None
        return value  # str, and timestamps kept as written (dates are text here)

    def _mapping(self, node, path: Path_) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            if str(key_node.tag) == "tag:yaml.org,2002:merge":  # `<<: *defaults`
                many = type(value_node).__name__ == "SequenceNode"
                for src in value_node.value if many else [value_node]:
                    if type(src).__name__ == "MappingNode":
                        merged = self._mapping(src, path)
                        for k, v in merged.items():
                            out.setdefault(k, v)
                continue
            if type(key_node).__name__ != "ScalarNode":
                mark = key_node.start_mark
                self.issue("type-error", "a mapping key must be a plain value", path,
                           at=(mark.line + 1, mark.column + 1))
                continue
            key = self._scalar(str(key_node.tag), key_node.value)
            mark = key_node.start_mark
            kpos = (mark.line + 1, mark.column + 1)
            if key in out and (path + (key,)) in self.pos.key:
                first = self.pos.key[path + (key,)]
                self.issue("duplicate-key", f"key {key!r} appears twice in this mapping "
                           f"(first at line {first[0]})", path + (key,), at=kpos)
                continue
            self.pos.key[path + (key,)] = kpos
            out[key] = self.build(value_node, path + (key,))
        return out


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------
# the checker
# ---------------------------------------------------------------------------

_YAML_TYPE = {
    dict: "a mapping",
    list: "a list",
    str: "text",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "nothing (null)",
}


def _describe(value: Any) -> str:
    kind = _YAML_TYPE.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} {shown}"


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for model in (Instrument, Reference, Translation, Scale, Construct, RepeatEntry, Repeat,
                  CollapseGroup, Collapse, Item, Section, Consent):
        names.update(model.model_fields)
    return names


_FIELD_NAMES = _all_field_names()
_CONTAINERS = ("translations", "references", "scales", "constructs", "consent", "sections")


def _header(model: type[BaseModel], exclude: Iterable[str]) -> type[BaseModel]:
    """``model`` without some fields, so its other fields validate on their own."""
    fields = {n: (f.annotation, f) for n, f in model.model_fields.items() if n not in exclude}
    return create_model(f"{model.__name__}Header", __base__=StrictModel, **fields)


_InstrumentHeader = _header(Instrument, _CONTAINERS)
_SectionHeader = _header(Section, ("items",))


# Required header fields that nothing else refers to: when only these are broken
# (already reported), stand-ins let the rest of the document still be checked.
_STAND_INS = {"id": "instrument", "version": "0.0.0", "title": "", "description": None}


def _stand_in_head(head_data: dict):
    """The header with stand-ins for broken id/version/title, or None if more is broken."""
    try:
        _InstrumentHeader.model_validate(head_data)
    except ValidationError as err:
        bad = {e["loc"][0] for e in err.errors() if e["loc"]}
        if not bad or not bad <= set(_STAND_INS):
            return None  # languages broken: later checks would only add noise
        try:
            return _InstrumentHeader.model_validate({**head_data, **{k: _STAND_INS[k] for k in bad}})
        except ValidationError:
            return None
    return None


class _Checker:
    def __init__(self, file: str | None, *, fielding: bool = False) -> None:
        self.file = file
        self.fielding = fielding  # also check what fielding needs (the web survey's wording in every language)
        self.report = InstrumentReport(file=file)
        self.pos = _Positions()
        self.origin: dict[int, Path_] = {}  # id(model object) -> document path
        self.langs: list[str] | None = None
        self.dropped: dict[int, set] = {}  # id(part) -> fields dropped after errors
        self.broken_sections: set[int] = set()  # sections whose own fields failed

    # --- recording issues --------------------------------------------------
    def issue(self, type_: str, message: str, path: Path_ = (), *, at=None,
              key: bool = False, severity: str = "error") -> None:
        line, col = at if at else self.pos.locate(path, key=key)
        self.report.add(InstrumentIssue(type_, message, self.file, line, col,
                                        format_path(path), severity))

    def warn(self, type_: str, message: str, path: Path_ = ()) -> None:
        self.issue(type_, message, path, severity="warning")

    def pydantic_errors(self, err: ValidationError, prefix: Path_, data: Any) -> None:
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            kind = e["type"]
            at_key = False
            if loc and loc[-1] == "[key]":  # a bad mapping key: point at the key
                loc, at_key = loc[:-1], True
            path = prefix + loc
            given = e.get("input")
            msg = e["msg"]
            if kind == "missing":
                self.issue("missing-field", f"required field '{loc[-1]}' is missing", path)
            elif kind == "extra_forbidden":
                name = str(loc[-1])
                hint = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.75)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                if name in _FIELD_NAMES:  # e.g. items at the top level: misplaced, not misspelt
                    extra = " (a field of another part of the instrument; it does not belong here)"
                self.issue("unknown-field", f"unknown field '{name}'{extra}", path, key=True)
            elif kind in ("literal_error", "enum"):
                self.issue("invalid-choice", f"{_describe(given)} is not allowed: "
                           f"{msg[0].lower()}{msg[1:]}", path)
            elif kind.endswith("_type") or kind.endswith("_parsing") or kind in (
                "model_attributes_type", "is_instance_of", "dataclass_type"
            ):
                what = "key" if at_key else "value"
                self.issue("type-error", f"{what} should be {_expected(msg)}, got {_describe(given)}",
                           path, key=at_key)
            else:
                self.issue("invalid-value", f"{msg[0].lower()}{msg[1:]}", path)

    # --- validating one part -----------------------------------------------
    def part(self, model: type[BaseModel], data: Any, path: Path_, *, retry: bool = True):
        """Validate one part; record its errors and return None when it fails."""
        if not isinstance(data, dict):
            self.issue("type-error" if data is not None else "missing-field",
                       f"should be a mapping of fields, got {_describe(data)}", path)
            return None
        try:
            obj = model.model_validate(data)
        except ValidationError as err:
            self.pydantic_errors(err, path, data)
            # Retry without the offending fields: if they were optional, the rest of
            # the part can still be cross-checked, so one typo hides nothing else.
            bad = {e["loc"][0] for e in err.errors() if e["loc"]}
            required = {n for n, f in model.model_fields.items() if f.is_required()}
            if not retry or not bad or bad & required:
                return None
            try:
                obj = model.model_validate({k: v for k, v in data.items() if k not in bad})
            except ValidationError:
                return None
            self.dropped[id(obj)] = bad
        self.origin[id(obj)] = path
        return obj

    def container(self, data: dict, name: str, kind: type, required: bool = False):
        value = data.get(name)
        if value is None:
            if required:
                self.issue("missing-field", f"required field '{name}' is missing", (name,))
            return kind()
        if not isinstance(value, kind):
            want = "a mapping" if kind is dict else "a list"
            self.issue("type-error", f"'{name}' should be {want}, got {_describe(value)}", (name,))
            return kind()
        return value

    # --- the whole document ------------------------------------------------
    def check(self, data: Any) -> Instrument | None:
        if not isinstance(data, dict):
            self.issue("not-a-mapping", "an instrument must be a mapping of fields "
                       f"(id, version, title, ...), got {_describe(data)}", ())
            return None

        head_data = {k: v for k, v in data.items() if k not in _CONTAINERS}
        head = self.part(_InstrumentHeader, head_data, ())
        if head is None:
            head = _stand_in_head(head_data)
        self.langs = list(head.languages) if head is not None else None
        translations = {
            lang: t for lang, v in self.container(data, "translations", dict).items()
            if (t := self.part(Translation, v, ("translations", lang)))
        }
        references = [
            r for i, v in enumerate(self.container(data, "references", list))
            if (r := self.part(Reference, v, ("references", i)))
        ]
        scales = {
            sid: s for sid, v in self.container(data, "scales", dict, required=True).items()
            # no partial scales: checks on a scale without its categories would mislead
            if (s := self.part(Scale, v, ("scales", sid), retry=False))
        }
        constructs = [
            c for i, v in enumerate(self.container(data, "constructs", list))
            if (c := self.part(Construct, v, ("constructs", i)))
        ]
        consent = self.part(Consent, data["consent"], ("consent",)) if data.get("consent") is not None else None

        sections: list[Section] = []
        broken_items: set[str] = set()  # ids of items that failed validation
        for i, sv in enumerate(self.container(data, "sections", list, required=True)):
            spath = ("sections", i)
            if not isinstance(sv, dict):
                self.part(Section, sv, spath)
                continue
            sec_head = self.part(_SectionHeader, {k: v for k, v in sv.items() if k != "items"}, spath)
            raw_items = sv.get("items", [])
            if not isinstance(raw_items, list):
                self.issue("type-error", f"'items' should be a list, got {_describe(raw_items)}",
                           spath + ("items",))
                raw_items = []
            items = []
            for j, iv in enumerate(raw_items):
                item = self.part(Item, iv, spath + ("items", j))
                if item is None:
                    if isinstance(iv, dict) and isinstance(iv.get("id"), str):
                        broken_items.add(iv["id"])
                    continue
                item._origin = spath + ("items", j)
                if self.dropped.get(id(item)):
                    broken_items.add(item.id)  # its construct or expected may be unknown
                items.extend(self.expand(item))
            if sec_head is not None:
                section = Section.model_construct(**sec_head.model_dump(), items=items)
            else:  # keep its items, so they still count and can be referred to
                sid = sv.get("id") if isinstance(sv.get("id"), str) else f"section{i + 1}"
                section = Section.model_construct(id=sid, title={}, intro=None, items=items)
                self.broken_sections.add(id(section))
            section._origin = spath
            sections.append(section)
        if "sections" in data and isinstance(data["sections"], list) and not data["sections"]:
            self.issue("invalid-value", "an instrument needs at least one section", ("sections",))

        if head is None:
            return None  # without languages and ids, later checks would only add noise
        inst = Instrument.model_construct(
            **head.model_dump(),
            translations=translations,
            references=references,
            scales=scales,
            constructs=constructs,
            consent=consent,
            sections=sections,
        )
        inst.model_post_init(None)
        self.semantics(inst, data, broken_items)
        return inst

    # --- templates -----------------------------------------------------------
    def expand(self, item: Item) -> list[Item]:
        if item.repeat is None:
            return [item]
        path = item.origin
        if "{key}" not in item.id:
            self.issue("repeat-invalid", f"a repeated item's id must contain {{key}} "
                       f"(got '{item.id}'), or every copy would share it", path + ("id",))
            return []
        out = []
        for k, entry in enumerate(item.repeat.over):

            def fill(s: str | None, lang: str | None = None, field: Path_ = ()) -> str | None:
                if s is None:
                    return None
                for name in re.findall(r"\{(\w*)\}", s):
                    if name not in ("key", "label"):
                        self.issue("repeat-invalid", f"unknown placeholder {{{name}}} "
                                   "(use {key} or {label})", path + field)
                label = entry.label.get(lang or "", next(iter(entry.label.values()), entry.key))
                return s.replace("{key}", entry.key).replace("{label}", label)

            if k > 0:  # report a bad placeholder once, not once per copy
                saved = self.report.issues[:]
            copy = item.model_copy(
                update={
                    "id": fill(item.id, None, ("id",)),
                    "text": {lg: fill(t, lg, ("text", lg)) for lg, t in item.text.items()},
                    "help": {lg: fill(t, lg, ("help", lg)) for lg, t in item.help.items()}
                    if item.help else None,
                    "relevant": fill(item.relevant, None, ("relevant",)),
                    "repeat": None,
                }
            )
            if k > 0:
                self.report.issues[:] = saved
            copy._origin = path
            copy._repeat_key = entry.key
            if self.langs:
                self.check_text(entry.label, self.langs, path + ("repeat", "over", k, "label"),
                                f"label of repeat key '{entry.key}'")
            out.append(copy)
        return out

    # --- cross-reference checks --------------------------------------------------
    def semantics(self, inst: Instrument, data: dict, broken_items: set[str]) -> None:
        langs = inst.languages
        self.check_id(inst.id, ("id",), "instrument id")
        if not _SEMVER.match(inst.version):
            self.issue("invalid-version", f"version '{inst.version}' is not semantic "
                       "(MAJOR.MINOR.PATCH, e.g. 1.0.0)", ("version",))
        seen_lang: set[str] = set()
        for i, lang in enumerate(langs):
            if lang in seen_lang:
                self.issue("duplicate-id", f"language '{lang}' is declared twice", ("languages", i))
            seen_lang.add(lang)
        if inst.default_language not in langs:
            self.issue("unknown-language", f"default language '{inst.default_language}' is not "
                       f"in languages {langs}", ("default_language",))
        for lang in langs:
            if lang != inst.default_language and lang not in inst.translations:
                self.issue("translation-status-missing", f"language '{lang}' has no entry in "
                           "'translations' (give status: draft or reviewed)",
                           ("translations",) if "translations" in data else ("languages",))
        for lang in inst.translations:
            if lang not in langs:
                self.issue("unknown-language", f"translation status for '{lang}', which is not "
                           f"in languages {langs}", ("translations", lang), key=True)

        construct_ids = {c.id for c in inst.constructs}
        raw_constructs = self._raw_construct_ids
        ref_ids = set()
        for r in inst.references:
            p = self.origin[id(r)]
            if r.id in ref_ids:
                self.issue("duplicate-id", f"reference id '{r.id}' is used twice", p + ("id",))
            ref_ids.add(r.id)
            for k, cid in enumerate(r.constructs):
                if cid not in raw_constructs:
                    self.issue("unknown-construct-ref", f"reference '{r.id}' names unknown "
                               f"construct '{cid}'", p + ("constructs", k))

        for sid, scale in inst.scales.items():
            self.check_scale(sid, scale, langs)

        seen: dict[str, Path_] = {}
        for c in inst.constructs:
            p = self.origin[id(c)]
            self.check_id(c.id, p + ("id",), "construct id")
            if c.id in seen:
                self.issue("duplicate-id", f"construct id '{c.id}' is used twice "
                           f"(first at line {self.pos.locate(seen[c.id])[0]})", p + ("id",))
            seen.setdefault(c.id, p + ("id",))
            for k, rid in enumerate(c.references):
                if rid not in ref_ids:
                    self.issue("unknown-reference", f"construct '{c.id}' cites unknown reference "
                               f"'{rid}'", p + ("references", k))
            if c.score == "count" and not c.count_codes:
                self.issue("invalid-value", f"construct '{c.id}' is scored by count but has no "
                           "count_codes", p + ("count_codes",))

        self.check_items(inst, langs, construct_ids, broken_items)

        for c in inst.constructs:
            p = self.origin[id(c)]
            items = inst.items_of(c.id)
            n = len(items)
            if c.kind == "latent" and n < 3 and not self._has_broken(data, c.id, broken_items):
                listed = ", ".join(it.id for it in items) or "none"
                self.issue("too-few-items", f"construct '{c.id}' has {n} item(s) ({listed}); a "
                           "latent construct needs at least 3", p + ("id",))
            if c.min_items is not None and (c.min_items < 1 or (c.min_items > n and n)):
                self.issue("min-items-invalid", f"min_items {c.min_items} of construct '{c.id}' "
                           f"must be between 1 and its {n} item(s)", p + ("min_items",))

        self.check_interface(inst, langs)

        if inst.consent is not None:
            self.check_text(inst.consent.text, langs, ("consent", "text"))
            if inst.consent.item is not None:
                try:
                    target = inst.item(inst.consent.item)
                    if target.role != "consent":
                        self.issue("role-mismatch", f"consent item '{target.id}' should have "
                                   f"role consent, not {target.role}", ("consent", "item"))
                except KeyError:
                    if inst.consent.item not in broken_items:
                        self.issue("unknown-item-ref", f"consent names unknown item "
                                   f"'{inst.consent.item}'", ("consent", "item"))

    def check_interface(self, inst: Instrument, langs: list[str]) -> None:
        """The web survey's wording: known keys, declared languages, the same {fields}; and
        a warning per language whose buttons or messages would fall back to English."""
        from instruments.interface import INTERFACE_KEYS, UI, placeholders, untranslated_interface

        for key, texts in inst.interface.items():
            p = ("interface", key)
            if key not in INTERFACE_KEYS:
                hint = difflib.get_close_matches(key, INTERFACE_KEYS, n=1, cutoff=0.7)
                self.issue("unknown-interface-key", f"unknown interface string '{key}'"
                           + (f" (did you mean '{hint[0]}'?)" if hint else ""), p, key=True)
                continue
            want = placeholders(UI["en"].get(key, ""))
            for lang, text in texts.items():
                if lang not in langs:
                    self.issue("unknown-language", f"interface string '{key}' in '{lang}', which is not "
                               f"a declared language ({', '.join(langs)})", p + (lang,), key=True)
                elif not text.strip():
                    self.issue("missing-translation", f"interface string '{key}' in '{lang}' is empty", p + (lang,))
                elif placeholders(text) != want:
                    fields = ", ".join("{" + f + "}" for f in sorted(want)) or "no {fields}"
                    self.issue("interface-placeholder", f"interface string '{key}' in '{lang}' must use "
                               f"{fields}, as the English wording does (write a literal brace as {{{{ or }}}})",
                               p + (lang,))
        for lang, keys in (untranslated_interface(inst) if self.fielding else {}).items():
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            self.warn("untranslated-interface", f"the web survey has no '{lang}' wording for {shown}: "
                      f"respondents reading '{lang}' would see English there; add them under "
                      f"interface: (e.g. interface: {{{keys[0]}: {{{lang}: ...}}}})",
                      ("interface",) if inst.interface else ("languages",))

    @staticmethod
    def _has_broken(data: dict, construct_id: str, broken_items: set[str]) -> bool:
        """Whether an item of this construct failed validation (then its count is unknown)."""
        for sec in data.get("sections") or []:
            if isinstance(sec, dict) and isinstance(sec.get("items"), list):
                for it in sec["items"]:
                    if isinstance(it, dict) and it.get("construct") == construct_id \
                            and isinstance(it.get("id"), str) and it["id"] in broken_items:
                        return True
        return False

    def check_id(self, value: str, path: Path_, what: str, key: bool = False) -> None:
        if not ID_PATTERN.match(value):
            self.issue("invalid-id", f"{what} '{value}' is not valid for export: start with a "
                       "letter; use only letters, digits and underscore", path, key=key)
        elif len(value) > REDCAP_MAX_ID:
            self.issue("long-id", f"{what} '{value}' has {len(value)} characters; REDCap "
                       f"advises at most {REDCAP_MAX_ID}", path, key=key, severity="warning")

    def check_text(self, text: dict | None, langs: list[str], path: Path_, what: str = "text"):
        if text is None:
            return []
        for lang in langs:
            value = text.get(lang)
            if value is None:
                self.issue("missing-translation", f"{what} has no '{lang}' version "
                           f"(languages: {', '.join(langs)})", path)
            elif not value.strip():
                self.issue("missing-translation", f"{what} in '{lang}' is empty", path + (lang,))
        for lang in text:
            if lang not in langs:
                self.issue("unknown-language", f"{what} in '{lang}', which is not a declared "
                           f"language ({', '.join(langs)})", path + (lang,), key=True)
        return []

    def check_scale(self, sid: str, scale: Scale, langs: list[str]) -> None:
        p = self.origin[id(scale)]
        self.check_id(str(sid), ("scales", sid), "scale id", key=True)
        if scale.is_categorical and not scale.categories:
            self.issue("empty-scale", f"{scale.type} scale '{sid}' has no categories",
                       p + ("categories",))
        if scale.categories and not scale.is_categorical:
            self.issue("invalid-value", f"{scale.type} scale '{sid}' cannot have categories",
                       p + ("categories",))
        if scale.type != "numeric" and (scale.min is not None or scale.max is not None):
            self.issue("invalid-bounds", f"min/max only apply to numeric scales, "
                       f"'{sid}' is {scale.type}", p + ("min" if scale.min is not None else "max",))
        if scale.min is not None and scale.max is not None and scale.min > scale.max:
            self.issue("invalid-bounds", f"scale '{sid}': min {scale.min:g} is greater than "
                       f"max {scale.max:g}", p + ("min",))
        codes: dict[int, int] = {}
        for k, cat in enumerate(scale.categories):
            cp = p + ("categories", k)
            if cat.code in codes:
                self.issue("code-collision", f"scale '{sid}': code {cat.code} is used by "
                           f"categories[{codes[cat.code]}] and categories[{k}]", cp + ("code",))
            codes.setdefault(cat.code, k)
            self.check_text(cat.label, langs, cp + ("label",), f"label of code {cat.code}")
        mcodes: dict[int, int] = {}
        for k, cat in enumerate(scale.missing):
            mp = p + ("missing", k)
            if cat.code in codes:
                self.issue("missing-code-collision", f"scale '{sid}': missing code {cat.code} is "
                           "also a valid answer code", mp + ("code",))
            elif cat.code in mcodes:
                self.issue("code-collision", f"scale '{sid}': missing code {cat.code} is listed "
                           "twice", mp + ("code",))
            elif scale.type == "numeric" and scale.min is not None and scale.max is not None \
                    and scale.min <= cat.code <= scale.max:
                self.issue("missing-code-collision", f"scale '{sid}': missing code {cat.code} "
                           f"lies inside the valid range {scale.min:g}..{scale.max:g}", mp + ("code",))
            mcodes.setdefault(cat.code, k)
            self.check_text(cat.label, langs, mp + ("label",), f"label of missing code {cat.code}")

    def check_items(self, inst: Instrument, langs, construct_ids, broken_items) -> None:
        seen_sections: set[str] = set()
        for section in inst.sections:
            if id(section) in self.broken_sections:
                continue
            sp = section._origin
            self.check_id(section.id, sp + ("id",), "section id")
            if section.id in seen_sections:
                self.issue("duplicate-id", f"section id '{section.id}' is used twice", sp + ("id",))
            seen_sections.add(section.id)
            self.check_text(section.title, langs, sp + ("title",), "title")
            self.check_text(section.intro, langs, sp + ("intro",), "intro")

        earlier: dict[str, Item] = {}
        all_ids = {it.id.lower() for it in inst.items} | {b.lower() for b in broken_items}
        templated_reported: set[tuple] = set()
        for item in inst.items:
            p = item.origin
            name = f"item '{item.id}'"
            once = item.repeat_key is None or p not in templated_reported
            if once:
                self.check_id(item.id, p + ("id",), "item id")
            key = item.id.lower()
            if key in earlier:
                first = earlier.get(key)
                where = f" (first at line {self.pos.locate(first.origin)[0]})" if first else ""
                same_case = first is not None and first.id == item.id
                self.issue("duplicate-id", f"item id '{item.id}' is used twice{where}"
                           + ("" if same_case else " (ids differ only in case, which REDCap "
                              "and SPSS treat as the same)"), p + ("id",))
            if item.scale not in inst.scales:
                if once and not self._scale_was_broken(item.scale):
                    hint = difflib.get_close_matches(item.scale, list(inst.scales), n=1)
                    self.issue("unknown-scale-ref", f"unknown scale '{item.scale}'"
                               + (f" (did you mean '{hint[0]}'?)" if hint else
                                  f"; defined: {', '.join(inst.scales) or 'none'}"), p + ("scale",))
                scale = None
            else:
                scale = inst.scales[item.scale]
            if item.construct is not None and item.construct not in construct_ids and once:
                if item.construct not in self._raw_construct_ids:
                    hint = difflib.get_close_matches(item.construct, list(construct_ids), n=1)
                    self.issue("unknown-construct-ref", f"unknown construct '{item.construct}'"
                               + (f" (did you mean '{hint[0]}'?)" if hint else ""), p + ("construct",))
            if item.reverse and scale is not None and scale.type != "ordinal" and once:
                self.issue("reverse-non-ordinal", f"{name} is reverse-keyed but its scale "
                           f"'{item.scale}' is {scale.type}; only ordinal items can be reversed",
                           p + ("reverse",))
            if once:
                self.check_text(item.text, langs, p + ("text",))
                self.check_text(item.help, langs, p + ("help",), "help")
            self.check_role(item, scale, p, name, once, langs, all_ids)
            if item.relevant is not None:
                self.check_relevance(inst, item, scale, p, earlier, all_ids)
            earlier[key] = item
            if item.repeat_key is not None:
                templated_reported.add(p)

    _raw_construct_ids: set = set()
    _broken_scales: set = set()

    def _scale_was_broken(self, sid: str) -> bool:
        return sid in self._broken_scales

    def check_role(self, item: Item, scale: Scale | None, p: Path_, name: str, once: bool, langs,
                   all_ids: set[str]):
        if not once:
            return
        if item.expected is not None and item.role != "attention":
            self.issue("role-mismatch", f"{name} has 'expected' but role {item.role}; only "
                       "attention checks have an expected answer", p + ("expected",))
        if item.role == "attention":
            if item.expected is None and not self.dropped.get(id(item)):
                self.issue("attention-expected-missing", f"attention check {name} needs "
                           "'expected': the code respondents are told to choose", p + ("id",))
            elif scale is not None and scale.is_categorical and item.expected not in scale.codes:
                self.issue("attention-expected-invalid", f"attention check {name} expects code "
                           f"{item.expected}, which scale '{item.scale}' lacks (codes: "
                           f"{', '.join(map(str, scale.codes))})", p + ("expected",))
        if item.construct is not None and item.role in ("attention", "consent", "demographic", "grouping"):
            self.issue("role-mismatch", f"{name} has role {item.role} and cannot measure "
                       f"construct '{item.construct}'", p + ("construct",))
        if item.collapsed is not None:
            if item.role != "grouping":
                self.issue("role-mismatch", f"{name} has a collapsed version but role "
                           f"{item.role}; use role grouping", p + ("collapsed",))
            self.check_collapse(item, scale, p + ("collapsed",), langs, all_ids)

    def check_collapse(self, item: Item, scale: Scale | None, p: Path_, langs, all_ids) -> None:
        col = item.collapsed
        self.check_id(col.id, p + ("id",), "collapsed id")
        if col.id.lower() in all_ids:  # it becomes a column of the data, beside the items
            self.issue("duplicate-id", f"collapsed id '{col.id}' is also an item id", p + ("id",))
        where: dict[int, int] = {}
        group_codes: set[int] = set()
        for g, group in enumerate(col.groups):
            gp = p + ("groups", g)
            if group.code in group_codes:
                self.issue("collapse-invalid", f"collapsed group code {group.code} is used twice",
                           gp + ("code",))
            group_codes.add(group.code)
            self.check_text(group.label, langs, gp + ("label",), f"label of group {group.code}")
            for k, code in enumerate(group.codes):
                if code in where:
                    self.issue("collapse-invalid", f"code {code} is mapped to two groups "
                               f"(groups[{where[code]}] and groups[{g}])", gp + ("codes", k))
                elif scale is not None and scale.is_categorical and code not in scale.codes:
                    self.issue("collapse-invalid", f"code {code} is not a code of scale "
                               f"'{item.scale}'", gp + ("codes", k))
                where.setdefault(code, g)
        if scale is not None and scale.is_categorical:
            unmapped = [c for c in scale.codes if c not in where]
            if unmapped:
                self.issue("collapse-invalid", f"codes {', '.join(map(str, unmapped))} of scale "
                           f"'{item.scale}' are in no collapsed group", p + ("groups",))

    def check_relevance(self, inst: Instrument, item: Item, scale, p: Path_, earlier, all_ids) -> None:
        path = p + ("relevant",)
        try:
            expr = rel.parse(item.relevant)
        except rel.RelevanceSyntaxError as err:
            line, col = self.pos.locate(path)
            if line is not None and path in self.pos.value:
                col = col + err.position + (1 if self.pos.quoted.get(path) else 0)
            self.issue("relevance-syntax-error", f"cannot parse condition of item '{item.id}': "
                       f"{err.message} (character {err.position + 1})", path, at=(line, col))
            return
        for leaf in rel.comparisons(expr):
            ref = leaf.item
            if ref.lower() not in all_ids:
                hint = difflib.get_close_matches(ref, [e.id for e in earlier.values()], n=1)
                self.issue("relevance-unknown-item", f"condition of item '{item.id}' names unknown "
                           f"item '{ref}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""), path)
            elif ref not in {e.id for e in earlier.values()} and ref.lower() in earlier:
                right = earlier[ref.lower()].id  # XLSForm names are case-sensitive
                self.issue("relevance-unknown-item", f"condition of item '{item.id}' names "
                           f"'{ref}'; the item is spelled '{right}'", path)
            elif ref.lower() not in earlier:
                what = "itself" if ref.lower() == item.id.lower() else f"'{ref}', which comes later"
                self.issue("relevance-forward-ref", f"condition of item '{item.id}' depends on "
                           f"{what}; conditions may only use earlier answers", path)
            else:
                target = earlier[ref.lower()]
                tscale = inst.scales.get(target.scale)
                values = [leaf.value] if isinstance(leaf, rel.Compare) else list(leaf.values)
                if tscale is not None and tscale.is_categorical and (
                    isinstance(leaf, rel.In) or leaf.op in ("==", "!=")
                ):
                    valid = set(tscale.codes) | set(tscale.missing_codes)
                    bad = [v for v in values if v not in valid]
                    if bad:
                        self.warn("relevance-unknown-code", f"condition of item '{item.id}' "
                                  f"compares '{ref}' with {', '.join(map(repr, bad))}, not a code "
                                  f"of scale '{target.scale}'", path)


def _expected(msg: str) -> str:
    """'Input should be a valid string' -> 'text'."""
    low = msg.lower()
    for word, say in (("string", "text"), ("integer", "an integer"), ("number", "a number"),
                      ("float", "a number"), ("boolean", "a boolean (true/false)"),
                      ("dictionary", "a mapping"), ("list", "a list"), ("mapping", "a mapping")):
        if word in low:
            return say
    return low.replace("input should be ", "")


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------

def _compose(text: str):
    """The YAML node tree of ``text`` (positions kept, nothing constructed).

    libyaml through PyYAML is about 20 times faster than pure-Python
    ruamel.yaml on the CRS; both only compose nodes, which is safe for any input.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ReusedAnchorWarning: not the user's concern here
        try:
            import yaml

            if yaml.__with_libyaml__:
                return yaml.compose(text, Loader=yaml.CSafeLoader)
        except ImportError:
            pass
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=True).compose(text)


def parse_instrument(source: str | bytes, *, file: str | None = None,
                     fielding: bool = False) -> tuple[Instrument | None, InstrumentReport]:
    """Check YAML text or bytes; return the instrument (None on errors) and the report.

    ``fielding``: also warn where the web survey would fall back to English
    (``untranslated-interface``), as ``resilience instrument validate`` does.
    """
    checker = _Checker(file, fielding=fielding)
    try:
        inst = _parse(checker, source)
    except Exception as exc:  # a loader bug must still come out as data
        checker.issue("internal-error", f"{type(exc).__name__}: {exc}", ())
        inst = None
    report = checker.report.sorted()
    if not report.valid:
        return None, report
    return inst, report


def _parse(checker: _Checker, source: str | bytes) -> Instrument | None:
    raw = source.encode("utf-8") if isinstance(source, str) else source
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        checker.issue("encoding-error", "the file is UTF-16 text; save it as UTF-8", at=(1, 1))
        return None
    if b"\x00" in raw:
        checker.issue("encoding-error", "this is a binary file, not YAML text", at=(1, 1))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        checker.issue("encoding-error", f"the file is not UTF-8 text (byte 0x{raw[err.start]:02x} "
                      "cannot be decoded); save it as UTF-8", at=(line, col))
        return None
    try:
        node = _compose(text)
    except Exception as err:  # the YAML libraries' errors carry marks; anything else is located at 1:1
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        what = " ".join(x for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
        what = what or str(err)
        if "flow" in what or "mapping values are not allowed" in what:
            what += " (put text that contains { } [ ] : or # in quotes)"
        at = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        lines = text.splitlines() or [""]
        if at[0] > len(lines):  # "end of file" marks sit past the last line
            at = (len(lines), len(lines[-1]) + 1)
        checker.issue("yaml-syntax-error", f"invalid YAML: {what}", at=at)
        return None
    if node is None:
        checker.issue("empty-file", "the file is empty: no instrument definition found", at=(1, 1))
        return None
    reader = _Reader(checker.issue)
    checker.pos = reader.pos
    try:
        data = reader.build(node)
    except _TooLarge:
        checker.issue("document-too-large", f"the document expands to more than {_MAX_NODES} "
                      "values (aliases nested too deeply?)", at=(1, 1))
        return None
    if isinstance(data, dict):
        checker._raw_construct_ids = {
            c["id"] for c in data.get("constructs") or []
            if isinstance(c, dict) and isinstance(c.get("id"), str)
        } if isinstance(data.get("constructs"), list) else set()
        scales = data.get("scales")
        checker._broken_scales = set(scales) if isinstance(scales, dict) else set()
    return checker.check(data)


def validate_instrument(path: str | Path, *, fielding: bool = False) -> InstrumentReport:
    """Check an instrument file; every problem is in the returned report (``fielding``: see
    :func:`parse_instrument`)."""
    return _load(path, fielding=fielding)[1]


def load_instrument(path: str | Path) -> Instrument:
    """Load an instrument file (or a library name such as ``"crs"``).

    Raises :class:`InstrumentError` (with ``.report``) if the file has errors;
    warnings are issued as :class:`InstrumentWarning`.
    """
    inst, report = _load(path)
    if inst is None:
        raise InstrumentError(report)
    for w in report.warnings:
        warnings.warn(str(w), InstrumentWarning, stacklevel=2)
    return inst


def _load(path: str | Path, *, fielding: bool = False) -> tuple[Instrument | None, InstrumentReport]:
    p = _resolve(path)
    name = str(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        report = InstrumentReport(file=name)
        report.add(InstrumentIssue("file-not-found", f"{name} {what}", name))
        return None, report
    try:
        raw = p.read_bytes()
    except OSError as err:
        report = InstrumentReport(file=name)
        report.add(InstrumentIssue("file-not-found", f"cannot read {name}: {err.strerror}", name))
        return None, report
    inst, report = parse_instrument(raw, file=p.name if p.parent == LIBRARY else name, fielding=fielding)
    if inst is not None:
        inst._sha256 = hashlib.sha256(raw).hexdigest()
        inst._source_path = str(p.resolve())
    return inst, report
