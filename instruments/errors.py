"""Problems found in an instrument definition, as data.

Every check adds an :class:`InstrumentIssue` to an :class:`InstrumentReport`;
nothing is raised while checking, so one run reports every problem. Only the
public entry point :func:`instruments.load_instrument` raises, with
:class:`InstrumentError` carrying the whole report.

Issue ``type`` codes are stable (tests and tools filter on them); the message is
for people. An issue prints as ``crs.yaml:41:5 items[3].scale: unknown scale 'likert7'``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal

__all__ = [
    "ISSUE_TYPES",
    "InstrumentIssue",
    "InstrumentReport",
    "InstrumentError",
    "InstrumentWarning",
    "format_path",
]

#: Every issue type code with a one-line meaning (the docs and tests list these).
ISSUE_TYPES: dict[str, str] = {
    # reading the file
    "file-not-found": "the path does not exist or is not a file",
    "encoding-error": "the file is not UTF-8 text (binary or another encoding)",
    "empty-file": "the file holds no YAML document",
    "yaml-syntax-error": "the text is not valid YAML",
    "yaml-tag-not-allowed": "an explicit YAML tag (e.g. !!python/object) in safe-only input",
    "duplicate-key": "the same key twice in one YAML mapping",
    "document-too-large": "the document expands to too many values (an alias bomb?)",
    "not-a-mapping": "the document is not a mapping of fields",
    # structure and types (from the pydantic model)
    "missing-field": "a required field is absent",
    "unknown-field": "a field the format does not define (often a typo)",
    "type-error": "a value of the wrong type",
    "invalid-choice": "a value outside the allowed set (e.g. scale type, role)",
    "invalid-value": "a value that breaks a constraint of its field",
    # identifiers and references
    "invalid-id": "an id that export targets reject (letter first; letters, digits, underscore)",
    "long-id": "an id longer than 26 characters (REDCap-safe limit) [warning]",
    "invalid-version": "version is not semantic (MAJOR.MINOR.PATCH)",
    "duplicate-id": "two things of one kind share an id (item ids compared case-insensitively)",
    "unknown-scale-ref": "an item names a scale that is not defined",
    "unknown-construct-ref": "an item names a construct that is not defined",
    "unknown-item-ref": "a reference (consent item) to an item that is not defined",
    "unknown-reference": "a construct cites a reference id that is not defined",
    # languages
    "unknown-language": "text in a language the instrument does not declare",
    "missing-translation": "a text lacks one of the declared languages",
    "translation-status-missing": "a declared language has no translation review status",
    "unknown-interface-key": "interface: names a web survey string that does not exist",
    "interface-placeholder": "an interface translation drops or adds a {field} of the English wording",
    "untranslated-interface": "a declared language lacks web survey wording (English would be shown)",
    # scales
    "empty-scale": "an ordinal or nominal scale without categories",
    "code-collision": "two categories of a scale share a code",
    "missing-code-collision": "a missing code equals a valid code of the same scale",
    "invalid-bounds": "numeric scale with min greater than max, or bounds on a non-numeric scale",
    # constructs and items
    "too-few-items": "a latent construct with fewer than 3 items",
    "min-items-invalid": "a construct's min_items is below 1 or above its number of items",
    "reverse-non-ordinal": "reverse-keying on an item whose scale is not ordinal",
    "role-mismatch": "a field that only makes sense for another item role",
    "attention-expected-missing": "an attention check without its expected answer code",
    "attention-expected-invalid": "an attention check expects a code its scale does not have",
    "collapse-invalid": "a grouping item's collapsed version maps codes wrongly",
    "repeat-invalid": "a repeated-item template that cannot be expanded",
    # relevance conditions
    "relevance-syntax-error": "a relevance condition that does not parse",
    "relevance-unknown-item": "a relevance condition names an item that does not exist",
    "relevance-forward-ref": "a relevance condition names this or a later item",
    "relevance-unknown-code": "a relevance condition compares with a code the item's scale lacks [warning]",
    # anything unforeseen still ends as data, never as a traceback
    "internal-error": "a bug in the loader (please report it)",
}

Severity = Literal["error", "warning"]


def format_path(loc: Iterable[Any]) -> str:
    """``("sections", 2, "items", 0, "scale")`` -> ``sections[2].items[0].scale``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class InstrumentIssue:
    """One problem, located in the source file (line and column are 1-based)."""

    type: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""
    severity: Severity = "error"

    @property
    def location(self) -> str:
        """``file:line:column`` (whatever parts are known)."""
        parts = [self.file or "<instrument>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        where = self.location + (f" {self.path}" if self.path else "")
        tag = "" if self.severity == "error" else " (warning)"
        return f"{where}: {self.message} [{self.type}]{tag}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InstrumentReport:
    """All issues of one instrument file; ``valid`` when there is no error."""

    file: str | None = None
    issues: list[InstrumentIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[InstrumentIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[InstrumentIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def types(self) -> list[str]:
        """The issue type codes, in order (handy for tests and filtering)."""
        return [i.type for i in self.issues]

    def add(self, issue: InstrumentIssue) -> None:
        self.issues.append(issue)

    def sorted(self) -> "InstrumentReport":
        """A copy with issues in file order (errors without a line last)."""
        key = lambda i: (i.line is None, i.line or 0, i.column or 0)  # noqa: E731
        return InstrumentReport(self.file, sorted(self.issues, key=key))

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "valid": self.valid,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "issues": [i.to_dict() for i in self.issues],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def as_table(self):
        """A rich Table with columns Location, Field, Type, Message."""
        from rich.table import Table

        status = "valid" if self.valid else "INVALID"
        table = Table(
            title=f"{self.file or 'instrument'}: {status} "
            f"({_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')})",
            show_lines=False,
        )
        # the file is in the title, so the columns stay narrow enough for 80 characters
        table.add_column("Line:Col", no_wrap=True)
        table.add_column("Field", overflow="fold", ratio=2)
        table.add_column("Type", no_wrap=True)  # a stable code: keep it greppable
        table.add_column("Message", overflow="fold", ratio=3)
        for i in self.issues:
            style = "red" if i.severity == "error" else "yellow"
            where = "" if i.line is None else f"{i.line}:{i.column}" if i.column else str(i.line)
            table.add_row(where, i.path, f"[{style}]{i.type}[/{style}]", i.message)
        return table

    def __str__(self) -> str:
        head = f"{self.file or 'instrument'}: " + (
            "valid" if self.valid else _count(len(self.errors), "error")
        )
        if self.warnings:
            head += f", {_count(len(self.warnings), 'warning')}"
        return "\n".join([head, *(str(i) for i in self.issues)])

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(i.location)}</td><td>{escape(i.path)}</td>"
            f"<td>{escape(i.type)}</td><td>{escape(i.message)}</td></tr>"
            for i in self.issues
        )
        return (
            f"<p>{escape(str(self).splitlines()[0])}</p><table><thead><tr><th>Location</th>"
            f"<th>Field</th><th>Type</th><th>Message</th></tr></thead><tbody>{rows}</tbody></table>"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class InstrumentError(Exception):
    """Raised by :func:`load_instrument` when the definition has errors."""

    def __init__(self, report: InstrumentReport):
        self.report = report
        super().__init__(str(report))

    def to_errors(self) -> list[InstrumentIssue]:
        return self.report.errors


class InstrumentWarning(UserWarning):
    """Warnings about an instrument that is still usable (e.g. long ids)."""
