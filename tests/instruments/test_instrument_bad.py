"""Malformed instruments: every one fails with the right type, line and field.

The files in tests/fixtures/instruments/bad/ are made by make_bad.py from the
valid minimal.yaml, one defect each; the line that must be reported carries
the comment ``# <- ERROR`` and bad/expected.json gives the issue type and the
field path. Each is checked through the library and through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import InstrumentError, load_instrument, validate_instrument
from instruments.errors import ISSUE_TYPES

BAD = Path(__file__).parents[1] / "fixtures" / "instruments" / "bad"
EXPECTED: dict[str, dict] = json.loads((BAD / "expected.json").read_text(encoding="utf-8"))
MARKER = b"# <- ERROR"


def _expected_line(name: str) -> int:
    spec = EXPECTED[name]
    if "line" in spec:
        return spec["line"]
    lines = (BAD / name).read_bytes().split(b"\n")
    hits = [i for i, line in enumerate(lines, 1) if MARKER in line]
    assert len(hits) == 1, f"{name}: expected one marker, found {len(hits)}"
    return hits[0]


def test_fixture_set_is_large_and_complete():
    files = sorted(p.name for p in BAD.glob("*.yaml"))
    assert sorted(EXPECTED) == files
    assert len(files) >= 25
    # one fixture per error kind of the issue, plus broken YAML, wrong types, empty, binary
    required = {
        "duplicate-id", "unknown-scale-ref", "unknown-construct-ref", "missing-translation",
        "too-few-items", "reverse-non-ordinal", "relevance-forward-ref", "relevance-unknown-item",
        "code-collision", "missing-code-collision", "invalid-id", "yaml-syntax-error",
        "type-error", "empty-file", "encoding-error",
    }
    assert required <= {spec["type"] for spec in EXPECTED.values()}
    assert {spec["type"] for spec in EXPECTED.values()} <= set(ISSUE_TYPES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_reports_type_line_and_field(name):
    spec = EXPECTED[name]
    line = _expected_line(name)
    report = validate_instrument(BAD / name)
    assert not report.valid
    matches = [i for i in report.errors if i.type == spec["type"] and i.line == line]
    assert matches, f"{name}: no {spec['type']} at line {line}; got:\n{report}"
    assert any(i.path == spec["path"] for i in matches), [i.path for i in matches]
    # the printed form names file, line and field: "file.yaml:41:5 items[3].scale: ..."
    text = str(matches[0])
    assert f"{name}:{line}:" in text
    if spec["path"]:
        assert f" {spec['path']}: " in text
    with pytest.raises(InstrumentError) as err:
        load_instrument(BAD / name)
    assert err.value.report.errors


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_exits_1_without_traceback(name):
    spec = EXPECTED[name]
    line = _expected_line(name)
    runner = CliRunner()
    path = str(BAD / name)

    as_json = runner.invoke(app, ["instrument", "validate", path, "--format", "json"])
    assert as_json.exit_code == 1, as_json.output
    assert as_json.exception is None or isinstance(as_json.exception, SystemExit)
    doc = json.loads(as_json.stdout)  # only JSON on stdout
    assert doc["valid"] is False
    assert any(
        i["type"] == spec["type"] and i["line"] == line and i["path"] == spec["path"]
        for i in doc["issues"]
    )

    table = runner.invoke(app, ["instrument", "validate", path], env={"COLUMNS": "250"})
    assert table.exit_code == 1
    assert "Traceback" not in table.output
    assert f"{line}:" in table.output and spec["type"] in table.output
    if spec["path"]:
        assert spec["path"] in table.output


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    base = (BAD.parent / "minimal.yaml").read_text(encoding="utf-8")
    broken = (
        base.replace("version: 1.0.0", "version: one")
        .replace("        scale: agree3\n        text: {en: I trust the council.",
                 "        scale: likert7\n        text: {en: I trust the council.")
        .replace("      - id: RESIDE\n", "      - id: RESIDE\n        colour: blue\n")
        .replace("        expected: 1\n", "        expected: 9\n")
        .replace("label: {en: Neutral, fr: Neutre}", "label: {en: Neutral}")
        .replace("relevant: CONSENT == 1 and REGION in [1, 2]", "relevant: TRUST3 == 1")
    )
    path = tmp_path / "many.yaml"
    path.write_text(broken, encoding="utf-8")
    report = validate_instrument(path)
    assert sorted(set(report.types)) == sorted({
        "invalid-version", "unknown-scale-ref", "unknown-field", "attention-expected-invalid",
        "missing-translation", "relevance-forward-ref",
    })
    # issues come in file order
    lines = [i.line for i in report.issues]
    assert lines == sorted(lines)


def test_unknown_field_suggests_the_intended_name():
    report = validate_instrument(BAD / "unknown_field.yaml")
    msg = next(i.message for i in report.errors if i.type == "unknown-field")
    assert msg == "unknown field 'scael' (did you mean 'scale'?)"


def test_a_misplaced_field_is_not_offered_as_its_own_correction(tmp_path):
    # `items:` at the top level was "unknown field 'items' (did you mean 'items'?)"
    path = tmp_path / "top_items.yaml"
    path.write_text("id: x\nversion: 0.1.0\ntitle: X\nitems: 5\n", encoding="utf-8")
    report = validate_instrument(path)
    msg = next(i.message for i in report.errors if i.type == "unknown-field")
    assert msg == "unknown field 'items' (a field of another part of the instrument; it does not belong here)"


def test_relevance_syntax_error_points_at_the_character():
    report = validate_instrument(BAD / "relevance_syntax.yaml")
    issue = next(i for i in report.errors if i.type == "relevance-syntax-error")
    line = (BAD / "relevance_syntax.yaml").read_text(encoding="utf-8").splitlines()[issue.line - 1]
    # the condition lacks its closing ']': the column is just past the text, at the closing quote
    assert line[issue.column - 1] == '"'
    assert "expected ',' or ']'" in issue.message


def test_missing_file_is_reported_not_raised(tmp_path):
    report = validate_instrument(tmp_path / "nope.yaml")
    assert report.types == ["file-not-found"]
    result = CliRunner().invoke(app, ["instrument", "validate", str(tmp_path / "nope.yaml")],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 1 and "does not exist" in result.output


def _minimal_with(*edits: tuple[str, str]):
    from instruments import parse_instrument

    text = (BAD.parent / "minimal.yaml").read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1
        text = text.replace(old, new)
    return parse_instrument(text, file="m.yaml")[1]


def test_relevance_names_must_match_case_exactly():
    report = _minimal_with(("relevant: CONSENT == 1 and REGION", "relevant: consent == 1 and REGION"))
    assert [str(i) for i in report.issues] == [
        "m.yaml:91:19 sections[0].items[2].relevant: condition of item 'TRUST1' names 'consent'; "
        "the item is spelled 'CONSENT' [relevance-unknown-item]"
    ]


def test_a_broken_section_header_keeps_its_items():
    """Only the bad title is reported: the section's items still count for TRUST and relevance."""
    report = _minimal_with(("    title: {en: Questions, fr: Questions}\n", "    title: Questions\n"))
    assert [(i.type, i.line, i.path) for i in report.issues] == [("type-error", 67, "sections[0].title")]


def test_utf16_and_multi_document_files():
    from instruments import parse_instrument

    minimal = (BAD.parent / "minimal.yaml").read_text(encoding="utf-8")
    report = parse_instrument(minimal.encode("utf-16"), file="u.yaml")[1]
    assert [str(i) for i in report.issues] == [
        "u.yaml:1:1: the file is UTF-16 text; save it as UTF-8 [encoding-error]"]
    report = parse_instrument(minimal + "---\nid: second\n", file="two.yaml")[1]
    n_lines = len(minimal.splitlines())
    assert [(i.type, i.line) for i in report.issues] == [("yaml-syntax-error", n_lines + 1)]
    assert "single document" in report.issues[0].message
    # a byte-order mark is fine
    assert parse_instrument(b"\xef\xbb\xbf" + minimal.encode("utf-8"))[1].valid


def test_a_broken_header_field_hides_nothing_else():
    """version: 1.0 (a number) or a missing title must not stop the cross-checks."""
    report = _minimal_with(("version: 1.0.0", "version: 1.0"), ("title: Minimal test instrument\n", ""),
                           ("relevant: CONSENT == 1 and REGION", "relevant: CONSENT == 1 and REGOIN"))
    assert [(i.type, i.line, i.path) for i in report.issues] == [
        ("missing-field", 3, "title"),  # where the top-level mapping starts
        ("type-error", 4, "version"),
        ("relevance-unknown-item", 90, "sections[0].items[2].relevant"),
    ]
    assert "did you mean 'REGION'?" in report.issues[-1].message
    # a broken language list still stops there: every text check would be noise
    report = _minimal_with(("languages: [en, fr]", "languages: en"),
                           ("relevant: CONSENT == 1 and REGION", "relevant: CONSENT == 1 and REGOIN"))
    assert [i.path for i in report.issues] == ["languages"]


def test_text_format_gives_one_clickable_line_per_issue(tmp_path):
    path = tmp_path / "v.yaml"
    text = (BAD.parent / "minimal.yaml").read_text(encoding="utf-8").replace("version: 1.0.0", "version: 1.0")
    path.write_text(text.replace("        scale: agree3\n        reverse: true", "        scale: agree5\n        reverse: true"),
                    encoding="utf-8")
    result = CliRunner().invoke(app, ["instrument", "validate", str(path), "--format", "text"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}: 2 errors",
        f"{path}:4:10 version: value should be text, got a number 1.0 [type-error]",
        f"{path}:99:16 sections[0].items[4].scale: unknown scale 'agree5' (did you mean 'agree3'?) "
        "[unknown-scale-ref]",
    ]
