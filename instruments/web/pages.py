"""Pages of the web survey and the checking of what a browser sent (pure functions).

``build_pages`` puts the consent item on a page of its own and then one page
per section; ``check_page`` applies the instrument's rules to one submitted
page, whatever the browser did: codes must belong to the item's scale, numbers
lie within bounds, required items are answered, and answers to items whose
relevance condition is false are dropped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from instruments.relevance import evaluate as _evaluate
from instruments.relevance import parse, referenced_items as _referenced

__all__ = ["Page", "build_pages", "check_page", "final_answers", "page_is_relevant", "may_be_relevant",
           "clean_text", "declined_consent", "MAX_TEXT"]

MAX_TEXT = 2000
# C0/C1 controls except tab and newlines, and the bidi embeddings, overrides and
# isolates (U+202A-E, U+2066-9) that can make free text read backwards where an
# admin shows it ("Trojan Source"). Marks (U+200E/F, U+061C) and joiners
# (U+200C/D), which Urdu, Persian and Indic scripts need, are kept.
_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Free text without control characters or bidi overrides."""
    return _UNSAFE_CHARS.sub("", text)


@functools.lru_cache(maxsize=None)
def _parsed(condition: str):
    return parse(condition)


def evaluate(condition: str, answers: dict) -> bool:
    return _evaluate(_parsed(condition), answers)


def referenced_items(condition: str) -> list[str]:
    return _referenced(_parsed(condition))


# ---------------------------------------------------------------------------
# pages and answer checking (pure functions, tested without a server)
# ---------------------------------------------------------------------------

@dataclass
class Page:
    key: str
    title: dict | None
    intro: dict | None
    items: list
    consent: bool = False


def build_pages(instrument) -> list[Page]:
    """The consent item on a page of its own first, then one page per section."""
    consent_id = instrument.consent.item if instrument.consent else None
    pages = []
    for sec in instrument.sections:
        items = [it for it in sec.items if it.id != consent_id]
        if consent_id and len(items) < len(sec.items):
            title = sec.title if not items else None
            pages.insert(0, Page("consent" if items else sec.id, title, None,
                                 [instrument.item(consent_id)], consent=True))
        if items:
            pages.append(Page(sec.id, sec.title, sec.intro, items))
    return pages


class _Problem(ValueError):
    def __init__(self, key: str, tampered: bool = False, **kw):
        self.key, self.tampered, self.kw = key, tampered, kw


def _parse_value(item, scale, raw: str) -> Any:
    """A submitted string as the value to store, or _Problem."""
    raw = raw.strip()
    if scale.type in ("ordinal", "nominal"):
        try:
            code = int(raw)
        except ValueError:
            raise _Problem("invalid", tampered=True) from None
        if code not in scale.codes and code not in scale.missing_codes:
            raise _Problem("invalid", tampered=True)
        return code
    if scale.type == "numeric":
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            raise _Problem("number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _Problem("number")
        if value in scale.missing_codes:
            return int(value)
        if scale.integer and value != int(value):
            raise _Problem("whole")
        lo = scale.min if scale.min is not None else float("-inf")
        hi = scale.max if scale.max is not None else float("inf")
        if not lo <= value <= hi:
            raise _Problem("range", min="…" if scale.min is None else f"{scale.min:g}",
                           max="…" if scale.max is None else f"{scale.max:g}")
        return int(value) if value == int(value) else value
    if scale.type == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise _Problem("date")
        return raw
    # free text: no control characters, bounded length; escaped wherever it is shown
    if len(raw) > MAX_TEXT:
        raise _Problem("toolong", tampered=True)
    return clean_text(raw)


def check_page(instrument, page: Page, form: dict[str, list[str]], answers: dict, *,
               require: bool = True) -> tuple[dict, dict, bool]:
    """Check one page's submitted fields against the instrument.

    ``form`` maps field names to all values sent. Returns the page's answers,
    errors ``{item_id: (message key, kw)}`` and whether anything was impossible
    for an honest browser (a code outside the scale, a repeated field).
    Items whose relevance condition is false are skipped: their values dropped.
    """
    working = {k: v for k, v in answers.items() if k not in {it.id for it in page.items}}
    values: dict[str, Any] = {}
    errors: dict[str, tuple[str, dict]] = {}
    tampered = False
    for item in page.items:
        if item.relevant and not evaluate(item.relevant, working):
            continue
        scale = instrument.scales[item.scale]
        sent = [v for v in form.get(item.id, []) if v.strip() != ""]
        sent += [v for v in form.get(item.id + "__missing", []) if v.strip() != ""]
        if len(sent) > 1:
            errors[item.id] = ("invalid", {})
            tampered = True
            continue
        if not sent:
            if require and item.required:
                errors[item.id] = ("required", {})
            continue
        try:
            value = _parse_value(item, scale, sent[0])
        except _Problem as p:
            errors[item.id] = (p.key, p.kw)
            tampered = tampered or p.tampered
            continue
        values[item.id] = value
        working[item.id] = value
    return values, errors, tampered


def final_answers(instrument, pages: list[Page], answers: dict) -> tuple[dict, int | None]:
    """Answers with skipped items dropped, and the first page lacking a required answer."""
    kept: dict[str, Any] = {}
    first_gap = None
    for n, page in enumerate(pages):
        for item in page.items:
            if item.relevant and not evaluate(item.relevant, kept):
                continue
            if item.id in answers and answers[item.id] is not None:
                kept[item.id] = answers[item.id]
            elif item.required and first_gap is None:
                first_gap = n
    return kept, first_gap


def page_is_relevant(page: Page, answers: dict) -> bool:
    return any(not it.relevant or evaluate(it.relevant, answers) for it in page.items)


def may_be_relevant(page: Page, answers: dict) -> bool:
    """For the progress bar: a page counts unless answers already given rule it out."""
    return any(not it.relevant or evaluate(it.relevant, answers)
               or any(r not in answers for r in referenced_items(it.relevant)) for it in page.items)


def declined_consent(instrument, answers: dict) -> bool:
    """Whether the consent item was answered 'no' (code 0) or with a missing code."""
    if instrument.consent is None or instrument.consent.item is None:
        return False
    code = answers.get(instrument.consent.item)
    return code is not None and (code == 0 or code in instrument.scale_of(instrument.consent.item).missing_codes)
