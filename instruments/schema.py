"""The instrument format as pydantic v2 models.

An instrument is one YAML file: metadata, languages, response scales,
constructs (the boxes of Figure 1), and sections holding items. These models
check structure and types only; cross-references (unknown scales, forward
relevance, too few items ...) are checked in :mod:`instruments.load`, which
reports every problem with its line and column.

Texts people read are mappings language -> text (``{en: ..., ur: ...}``); every
declared language must be present. Researcher-facing notes (construct
definitions, citations) are plain strings.
"""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "LocalText",
    "Reference",
    "Translation",
    "Category",
    "Scale",
    "Construct",
    "RepeatEntry",
    "Repeat",
    "CollapseGroup",
    "Collapse",
    "Item",
    "Section",
    "Consent",
    "Instrument",
    "SCALE_TYPES",
    "ITEM_ROLES",
]

LocalText = dict[str, str]
ScaleType = Literal["ordinal", "nominal", "numeric", "text", "date"]
# weight / cluster / stratum: the sample-design variables (analysis.design)
Role = Literal["item", "demographic", "grouping", "attention", "consent", "repr", "weight", "cluster",
               "stratum"]
SCALE_TYPES: tuple[str, ...] = ("ordinal", "nominal", "numeric", "text", "date")
ITEM_ROLES: tuple[str, ...] = ("item", "demographic", "grouping", "attention", "consent", "repr",
                              "weight", "cluster", "stratum")


class StrictModel(BaseModel):
    """The base of every instrument schema class."""

    # strict: a YAML 1 is not the string "1", and a typo'd key is an error, not ignored
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


class Reference(StrictModel):
    """A citation of an anchor scale (we cite; we never copy its wording)."""

    id: str = Field(description="short key, e.g. 'ess5_trust'")
    citation: str = Field(description="full citation")
    constructs: list[str] = Field(default_factory=list, description="construct ids it anchors")
    doi: str | None = None
    url: str | None = None


class Translation(StrictModel):
    """Review status of one language's texts."""

    status: Literal["draft", "reviewed"] = Field(
        description="'draft' until a community reviewer signs the translation off"
    )
    translator: str | None = None
    reviewer: str | None = None
    reviewed_on: str | None = Field(default=None, description="ISO date of the sign-off")
    notes: str | None = None


class Category(StrictModel):
    """One answer option: an integer code and its label in every language."""

    code: int
    label: LocalText


class Scale(StrictModel):
    """A response scale shared by items (keyed by its id in ``scales``)."""

    type: ScaleType = Field(description="ordinal | nominal | numeric | text | date")
    description: str | None = None
    categories: list[Category] = Field(
        default_factory=list, description="answer options (ordinal: lowest first)"
    )
    missing: list[Category] = Field(
        default_factory=list,
        description="labelled missing codes, e.g. -9 'Prefer not to say'",
    )
    min: float | None = Field(default=None, description="numeric: lowest valid value")
    max: float | None = Field(default=None, description="numeric: highest valid value")
    integer: bool = Field(default=True, description="numeric: whole numbers only")

    _id: str = PrivateAttr(default="")

    @property
    def id(self) -> str:
        return self._id

    @property
    def codes(self) -> list[int]:
        """Valid (substantive) answer codes, in scale order."""
        return [c.code for c in self.categories]

    @property
    def missing_codes(self) -> list[int]:
        return [c.code for c in self.missing]

    @property
    def ordered(self) -> bool:
        return self.type == "ordinal"

    @property
    def is_categorical(self) -> bool:
        return self.type in ("ordinal", "nominal")

    def labels(self, lang: str, *, missing: bool = False) -> dict[int, str]:
        """code -> label in ``lang`` (with the missing codes when asked)."""
        cats = self.categories + (self.missing if missing else [])
        return {c.code: c.label.get(lang, "") for c in cats}

    def reverse(self, code: int) -> int:
        """The reverse-keyed code of an ordinal answer (missing codes unchanged)."""
        codes = self.codes
        if code not in codes:
            return code
        return codes[len(codes) - 1 - codes.index(code)]


class Construct(StrictModel):
    """A box of Figure 1 measured by several items."""

    id: str
    label: str
    definition: str
    figure1_box: str | None = Field(default=None, description="crs only: the Figure 1 box this construct measures")
    kind: Literal["latent", "observed"] = Field(
        default="latent", description="latent: a factor in the CFA; observed: a score only (REPR)"
    )
    min_items: int | None = Field(
        default=None, description="fewest answered items for a score (default: all but one)"
    )
    score: Literal["mean", "sum", "count"] = Field(
        default="mean", description="count: number of items answered with one of count_codes"
    )
    count_codes: list[int] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list, description="reference ids")


class RepeatEntry(StrictModel):
    key: str = Field(description="substituted for {key} (ids: letters, digits, underscore)")
    label: LocalText = Field(description="substituted for {label}, per language")


class Repeat(StrictModel):
    """Ask one item template over a list (police, council, schools ...)."""

    over: list[RepeatEntry] = Field(min_length=1)


class CollapseGroup(StrictModel):
    code: int
    label: LocalText
    codes: list[int] = Field(description="codes of the detailed item that fall in this group")


class Collapse(StrictModel):
    """A grouping item's analysis version: detailed codes mapped to fewer groups."""

    id: str = Field(description="variable name of the collapsed version")
    description: str | None = None
    groups: list[CollapseGroup]

    def mapping(self) -> dict[int, int]:
        """detailed code -> collapsed code."""
        return {c: g.code for g in self.groups for c in g.codes}


# `construct` is also a (deprecated) BaseModel classmethod; the field name is the clearer one.
warnings.filterwarnings("ignore", message='Field name "construct"', category=UserWarning)


class Item(StrictModel):
    """A question. After loading, templates are expanded: every Item is concrete."""

    id: str
    text: LocalText
    scale: str = Field(description="id of a scale in `scales`")
    construct: str | None = Field(default=None, description="id of a construct")
    role: Role = "item"
    reverse: bool = Field(default=False, description="reverse-keyed (ordinal scales only)")
    required: bool = True
    relevant: str | None = Field(
        default=None, description="condition on earlier answers, e.g. 'REPR1 == 1 and AGE >= 3'"
    )
    help: LocalText | None = None
    expected: int | None = Field(default=None, description="attention checks: the instructed code")
    collapsed: Collapse | None = Field(default=None, description="grouping items: analysis version")
    repeat: Repeat | None = Field(
        default=None, description="expand over a list; use {key} in id and {label} in texts"
    )
    notes: str | None = None

    _section: str | None = PrivateAttr(default=None)
    _origin: tuple = PrivateAttr(default=())
    _repeat_key: str | None = PrivateAttr(default=None)

    @property
    def section(self) -> str | None:
        """Id of the section the item belongs to."""
        return self._section

    @property
    def origin(self) -> tuple:
        """Path of the item (or its template) in the source document."""
        return self._origin

    @property
    def repeat_key(self) -> str | None:
        """For items expanded from a template: the key it was expanded for."""
        return self._repeat_key


class Section(StrictModel):
    """A page of the questionnaire, with intro text."""

    id: str
    title: LocalText
    intro: LocalText | None = None
    items: list[Item] = Field(default_factory=list)

    _origin: tuple = PrivateAttr(default=())


class Consent(StrictModel):
    text: LocalText
    item: str | None = Field(default=None, description="id of the item (role consent) recording it")


class Instrument(StrictModel):
    """A questionnaire definition (the YAML file), with helpers for analysis."""

    id: str
    version: str = Field(description="semantic version MAJOR.MINOR.PATCH")
    title: str
    description: str = ""
    languages: list[str] = Field(min_length=1)
    default_language: str
    translations: dict[str, Translation] = Field(default_factory=dict)
    references: list[Reference] = Field(default_factory=list)
    scales: dict[str, Scale]
    constructs: list[Construct] = Field(default_factory=list)
    consent: Consent | None = None
    sections: list[Section] = Field(min_length=1)
    interface: dict[str, LocalText] = Field(
        default_factory=dict,
        description="web survey wording per key and language (title, next, back, ...); "
                    "the suite ships English and Urdu",
    )

    _sha256: str | None = PrivateAttr(default=None)
    _source_path: str | None = PrivateAttr(default=None)

    def model_post_init(self, __context) -> None:
        for sid, scale in self.scales.items():
            scale._id = sid
        for section in self.sections:
            for item in section.items:
                item._section = section.id

    # --- provenance -------------------------------------------------------
    @property
    def sha256(self) -> str | None:
        """SHA-256 of the source file's bytes (None when built in memory)."""
        return self._sha256

    @property
    def source_path(self) -> str | None:
        return self._source_path

    # --- lookups ----------------------------------------------------------
    @property
    def items(self) -> list[Item]:
        """All items in questionnaire order, templates expanded."""
        return [item for section in self.sections for item in section.items]

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(f"no item {item_id!r} in instrument {self.id!r}")

    def scale_of(self, item_id: str) -> Scale:
        return self.scales[self.item(item_id).scale]

    def construct(self, construct_id: str) -> Construct:
        for c in self.constructs:
            if c.id == construct_id:
                return c
        raise KeyError(f"no construct {construct_id!r} in instrument {self.id!r}")

    def items_of(self, construct_id: str) -> list[Item]:
        return [it for it in self.items if it.construct == construct_id]

    @property
    def item_ids(self) -> list[str]:
        return [it.id for it in self.items]

    @property
    def construct_ids(self) -> list[str]:
        return [c.id for c in self.constructs]

    @property
    def latent_constructs(self) -> list[Construct]:
        return [c for c in self.constructs if c.kind == "latent"]

    @property
    def reverse_keyed_items(self) -> list[Item]:
        return [it for it in self.items if it.reverse]

    @property
    def attention_checks(self) -> list[Item]:
        """Instructed-response items; each has ``expected`` (the instructed code)."""
        return [it for it in self.items if it.role == "attention"]

    def design_columns(self) -> dict[str, str]:
        """The sample-design variables the instrument marks: {"weights"|"cluster"|"strata": item id}."""
        keys = {"weight": "weights", "cluster": "cluster", "stratum": "strata"}
        return {keys[it.role]: it.id for it in self.items if it.role in keys}

    def items_by_role(self, role: str) -> list[Item]:
        return [it for it in self.items if it.role == role]

    @property
    def demographic_items(self) -> list[Item]:
        return [it for it in self.items if it.role in ("demographic", "grouping")]

    @property
    def grouping_items(self) -> list[Item]:
        return self.items_by_role("grouping")

    def text(self, item_id: str, lang: str | None = None) -> str:
        return self.item(item_id).text[lang or self.default_language]

    def measurement_syntax(self) -> str:
        """lavaan measurement model of all latent constructs, one line each.

        >>> inst.measurement_syntax().splitlines()[0]   # doctest: +SKIP
        'CULT =~ CULT1 + CULT2 + CULT3 + CULT4'
        """
        lines = []
        for c in self.latent_constructs:
            ids = [it.id for it in self.items_of(c.id) if it.role == "item"]
            if ids:
                lines.append(f"{c.id} =~ " + " + ".join(ids))
        return "\n".join(lines)

    def summary(self):
        """One row per construct: label, box, kind, n_items, reverse-keyed items."""
        import pandas as pd

        rows = []
        for c in self.constructs:
            items = self.items_of(c.id)
            rows.append(
                {
                    "construct": c.id,
                    "label": c.label,
                    "figure1_box": c.figure1_box,
                    "kind": c.kind,
                    "n_items": len(items),
                    "items": ", ".join(i.id for i in items),
                    "reverse_keyed": ", ".join(i.id for i in items if i.reverse),
                }
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (
            f"<Instrument {self.id} {self.version}: {len(self.constructs)} constructs, "
            f"{len(self.items)} items, languages {self.languages}>"
        )

    __str__ = __repr__
