"""Codebooks (Markdown, frictionless Table Schema), JSON Schema export and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from frictionless import Resource, Schema
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import library_path, load_instrument
from instruments.codebook import markdown_codebook, table_schema
from instruments.jsonschema import SCHEMA_PATH, instrument_json_schema

CRS = library_path("crs")
runner = CliRunner()


@pytest.fixture(scope="module")
def crs():
    return load_instrument(CRS)


def test_table_schema_is_valid_frictionless(crs):
    descriptor = table_schema(crs)
    report = Schema.validate_descriptor(descriptor)
    assert report.valid, report.flatten(["type", "note"])
    names = [f["name"] for f in descriptor["fields"]]
    assert names[: len(crs.items)] != []
    # every item once, in order, with the collapsed ethnic group right after ETHNIC
    assert [n for n in names if n != "ETHNIC5"] == crs.item_ids
    assert names[names.index("ETHNIC") + 1] == "ETHNIC5"


def test_table_schema_fields(crs):
    fields = {f["name"]: f for f in table_schema(crs)["fields"]}
    trust4 = fields["TRUST4"]
    assert trust4["type"] == "integer"
    assert trust4["categoriesOrdered"] is True
    assert trust4["categories"][0] == {"value": 1, "label": "Strongly disagree"}
    assert {"value": "-9", "label": "Prefer not to say"} in trust4["missingValues"]
    assert "reverse-keyed" in trust4["description"]
    assert fields["ETHNIC"]["categoriesOrdered"] is False
    assert len(fields["ETHNIC"]["categories"]) == 19
    assert [c["value"] for c in fields["ETHNIC5"]["categories"]] == [1, 2, 3, 4, 5]
    assert fields["AREA"]["type"] == "string" and "categories" not in fields["AREA"]
    assert "instructed answer: 2" in fields["ATTN1"]["description"]
    ur = {f["name"]: f for f in table_schema(crs, lang="ur")["fields"]}
    assert ur["TRUST1"]["title"] == crs.item("TRUST1").text["ur"]


def test_table_schema_validates_data(crs, tmp_path):
    """Data that follows the codebook passes; a wrong code is caught with its row and field."""
    schema = table_schema(crs)
    names = [f["name"] for f in schema["fields"]]
    good = {n: "" for n in names}
    good.update({"CONSENT": "1", "ETHNIC": "4", "ETHNIC5": "1", "TRUST1": "5", "TRUST2": "-9",
                 "AREA": "Lozells", "RESIDE": "3"})
    bad = dict(good, TRUST1="7", ETHNIC5="9")
    lines = [",".join(names)] + [",".join(row[n] for n in names) for row in (good, good, bad)]
    (tmp_path / "answers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    resource = Resource.from_descriptor(
        {"$schema": "https://datapackage.org/profiles/2.0/dataresource.json",
         "name": "answers", "path": "answers.csv", "schema": schema},
        basepath=str(tmp_path),
    )
    report = resource.validate()
    errors = report.flatten(["rowNumber", "fieldName", "type"])
    assert sorted(errors) == [[4, "ETHNIC5", "constraint-error"], [4, "TRUST1", "constraint-error"]]


def test_table_schema_matches_columns_by_name(crs, tmp_path):
    """An export with an id column first and no derived ETHNIC5 still validates; bad codes are still caught."""
    schema = table_schema(crs)
    names = ["respondent_id", "TRUST2", "CONSENT", "ETHNIC", "TRUST1"]
    rows = [["R1", "-9", "1", "4", "5"], ["R2", "2", "1", "19", "1"], ["R3", "3", "1", "20", "6"]]
    (tmp_path / "export.csv").write_text("\n".join(",".join(r) for r in [names, *rows]) + "\n", encoding="utf-8")
    resource = Resource.from_descriptor(
        {"$schema": "https://datapackage.org/profiles/2.0/dataresource.json",
         "name": "export", "path": "export.csv", "schema": schema},
        basepath=str(tmp_path),
    )
    errors = resource.validate().flatten(["rowNumber", "fieldName", "type"])
    assert sorted(errors) == [[4, "ETHNIC", "constraint-error"], [4, "TRUST1", "constraint-error"]]


def test_minimal_numeric_bounds_in_table_schema():
    inst = load_instrument(Path(__file__).parents[1] / "fixtures/instruments/minimal.yaml")
    fields = {f["name"]: f for f in table_schema(inst)["fields"]}
    assert fields["RESIDE"]["type"] == "integer"
    assert fields["RESIDE"]["constraints"] == {"minimum": 0, "maximum": 100}
    assert Schema.validate_descriptor(table_schema(inst)).valid


def test_markdown_codebook(crs):
    md = markdown_codebook(crs)
    assert md.startswith("# Community Resilience Survey: codebook")
    for item_id in crs.item_ids:
        assert f"| `{item_id}` |" in md
    assert "| `TRUST` | Trust in providers | Trust | latent | TRUST1, TRUST2, TRUST3, TRUST4 | TRUST4 |" in md
    assert "| -9 | Prefer not to say | missing |" in md
    assert "TRUST =~ TRUST1 + TRUST2 + TRUST3 + TRUST4" in md
    assert "`ur` (draft)" in md
    assert "https://doi.org/10.1177/1477370811411458" in md
    assert crs.sha256 in md


def test_json_schema_matches_models_and_accepts_crs():
    import jsonschema
    from ruamel.yaml import YAML

    shipped = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert shipped == instrument_json_schema(), "run: resilience instrument schema -o " + str(SCHEMA_PATH)
    jsonschema.Draft202012Validator.check_schema(shipped)
    validator = jsonschema.Draft202012Validator(shipped)
    data = YAML(typ="safe", pure=True).load(CRS.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(data)) == []
    data["sections"][0]["items"][0]["scael"] = "x"
    errors = list(validator.iter_errors(data))
    assert len(errors) == 1 and "scael" in errors[0].message


# --- CLI -----------------------------------------------------------------------------

def test_cli_validate_crs_exits_0():
    result = runner.invoke(app, ["instrument", "validate", str(CRS)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "12 constructs, 59 items" in result.output


def test_cli_validate_json_prints_only_json():
    result = runner.invoke(app, ["instrument", "validate", str(CRS), "--format", "json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc == {"file": "crs.yaml", "valid": True, "n_errors": 0, "n_warnings": 0, "issues": []}


def test_cli_show(crs):
    result = runner.invoke(app, ["instrument", "show", "crs"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for cid in crs.construct_ids:
        assert cid in result.output
    assert "ur (draft)" in result.output
    assert "ETHNIC5 (5 groups)" in result.output
    assert "expects code 2" in result.output
    ur = runner.invoke(app, ["instrument", "show", "crs", "--lang", "ur"], env={"COLUMNS": "250"})
    assert crs.item("HOPE1").text["ur"] in ur.output
    bad_lang = runner.invoke(app, ["instrument", "show", "crs", "--lang", "xx"])
    assert bad_lang.exit_code == 2


def test_cli_show_invalid_instrument_exits_1():
    bad = Path(__file__).parents[1] / "fixtures/instruments/bad/unknown_scale.yaml"
    result = runner.invoke(app, ["instrument", "show", str(bad)], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "unknown-scale-ref" in result.output and "Traceback" not in result.output


def test_cli_codebook_both_formats(tmp_path, crs):
    out_json = tmp_path / "codebook.json"
    r1 = runner.invoke(app, ["instrument", "codebook", "crs", "-o", str(out_json)])
    assert r1.exit_code == 0, r1.output
    assert json.loads(out_json.read_text(encoding="utf-8")) == table_schema(crs)
    out_md = tmp_path / "codebook.md"
    r2 = runner.invoke(app, ["instrument", "codebook", "crs", "-o", str(out_md), "--format", "markdown"])
    assert r2.exit_code == 0
    assert out_md.read_text(encoding="utf-8").strip() == markdown_codebook(crs).strip()
    r3 = runner.invoke(app, ["instrument", "codebook", "crs", "--format", "tableschema"])
    assert json.loads(r3.stdout)["fields"][0]["name"] == "CONSENT"


def test_cli_schema(tmp_path):
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["instrument", "schema", "-o", str(out)])
    assert result.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == instrument_json_schema()
