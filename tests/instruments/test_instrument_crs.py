"""The shipped Community Resilience Survey and the public Instrument API."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import pytest

from instruments import (
    Instrument,
    InstrumentError,
    library_instruments,
    library_path,
    load_instrument,
    parse_instrument,
    validate_instrument,
)
from instruments.errors import InstrumentWarning

CRS = library_path("crs")
MINIMAL = Path(__file__).parents[1] / "fixtures" / "instruments" / "minimal.yaml"
LATENT = ["CULT", "PART", "TRUST", "CONF", "HOPE", "AGENCY", "PSI", "NEGOT", "NAVIG", "CAPAB", "RESIL"]


@pytest.fixture(scope="module")
def crs() -> Instrument:
    return load_instrument(CRS)


def test_crs_is_valid_without_warnings():
    report = validate_instrument(CRS)
    assert report.valid, str(report)
    assert report.issues == []
    assert "crs" in library_instruments()


def test_crs_metadata(crs):
    assert crs.id == "crs"
    assert re.fullmatch(r"\d+\.\d+\.\d+", crs.version)
    assert crs.title == "Community Resilience Survey"
    assert crs.default_language == "en"
    assert crs.languages[0] == "en" and len(crs.languages) >= 2
    for lang in crs.languages[1:]:
        assert crs.translations[lang].status == "draft"
    assert crs.sha256 == hashlib.sha256(CRS.read_bytes()).hexdigest()
    assert crs.source_path == str(CRS.resolve())
    assert load_instrument("crs").sha256 == crs.sha256  # library name resolves to the same file


def test_crs_covers_figure1(crs):
    assert [c.id for c in crs.latent_constructs] == LATENT
    assert "REPR" in crs.construct_ids and crs.construct("REPR").kind == "observed"
    for cid in LATENT:
        items = crs.items_of(cid)
        assert 3 <= len(items) <= 5, cid
        assert sum(i.reverse for i in items) <= 1, cid
        assert crs.construct(cid).figure1_box
        assert all(crs.scale_of(i.id).type == "ordinal" for i in items)
        assert all(i.role == "item" for i in items)
    assert {crs.item(i).scale for i in ("NAVIG1", "NAVIG2", "NAVIG3")} == {"likely5"}
    assert crs.scale_of("TRUST1").labels("en")[1] == "Strongly disagree"
    assert crs.scale_of("PARTIC1").labels("en")[5] == "Very often"
    # every construct's items are numbered CONSTRUCT1..n, valid everywhere
    for item in crs.items:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,25}", item.id), item.id


def test_crs_missing_codes_and_reverse(crs):
    agree = crs.scales["agree5"]
    assert agree.codes == [1, 2, 3, 4, 5]
    assert -9 in agree.missing_codes
    assert agree.labels("en", missing=True)[-9] == "Prefer not to say"
    assert [agree.reverse(c) for c in (1, 2, 3, 4, 5, -9)] == [5, 4, 3, 2, 1, -9]
    assert len(crs.reverse_keyed_items) == 6


def test_crs_repr_items_and_count_score(crs):
    repr_items = crs.items_of("REPR")
    assert [i.id for i in repr_items] == ["REPR1", "REPR2", "REPR3"]
    assert all(i.role == "repr" for i in repr_items)
    c = crs.construct("REPR")
    assert c.score == "count" and c.count_codes == [1]
    assert "REPR" not in crs.measurement_syntax()


def test_crs_demographics(crs):
    ethnic = crs.item("ETHNIC")
    assert ethnic.role == "grouping"
    scale = crs.scale_of("ETHNIC")
    assert len(scale.codes) == 19
    mapping = ethnic.collapsed.mapping()
    assert sorted(mapping) == scale.codes
    assert sorted(set(mapping.values())) == [1, 2, 3, 4, 5]
    assert mapping[4] == 1 and mapping[18] == 5  # Pakistani -> Asian; Arab -> Other
    for item_id in ("RELIGION", "GENDER", "AGEBAND", "LANG", "AREA", "RESIDE"):
        assert crs.item(item_id).role in ("demographic", "grouping")
    assert crs.scale_of("RELIGION").labels("en")[6] == "Muslim"


def test_crs_attention_consent_and_relevance(crs):
    (attn,) = crs.attention_checks
    assert attn.expected in crs.scale_of(attn.id).codes
    assert crs.scale_of(attn.id).labels("en")[attn.expected] in attn.text["en"]
    assert crs.consent is not None and crs.consent.item == "CONSENT"
    assert crs.item("CONSENT").role == "consent"
    assert all(i.relevant == "CONSENT == 1" for i in crs.items if i.id != "CONSENT")


def test_crs_translations_are_complete_and_distinct(crs):
    for item in crs.items:
        assert set(item.text) == set(crs.languages)
        assert item.text["ur"].strip() and item.text["ur"] != item.text["en"]
        # Urdu is written in Arabic script
        assert re.search(r"[\u0600-\u06FF]", item.text["ur"]), item.id


def test_crs_references_anchor_every_latent_construct(crs):
    anchored = {c for r in crs.references for c in r.constructs}
    assert set(LATENT) - {"PSI"} <= anchored
    cited = {rid for c in crs.constructs for rid in c.references}
    assert cited <= {r.id for r in crs.references}


def test_repeated_items_expand_with_positions(crs):
    ids = [i.id for i in crs.items if i.id.startswith("TRUSTORG_")]
    assert ids == ["TRUSTORG_POLICE", "TRUSTORG_COUNCIL", "TRUSTORG_SCHOOLS"]
    police = crs.item("TRUSTORG_POLICE")
    assert police.text["en"] == "I trust the local police to treat my community fairly."
    assert "{label}" not in police.text["ur"] and "مقامی پولیس" in police.text["ur"]
    assert police.repeat_key == "POLICE" and police.repeat is None
    assert police.origin == crs.item("TRUSTORG_SCHOOLS").origin  # same template
    assert police.section == "S_TRUST"


def test_measurement_syntax(crs):
    lines = crs.measurement_syntax().splitlines()
    assert len(lines) == 11
    assert lines[2] == "TRUST =~ TRUST1 + TRUST2 + TRUST3 + TRUST4"
    assert "TRUSTORG" not in crs.measurement_syntax()


def test_summary_frame(crs):
    df = crs.summary()
    assert list(df["construct"]) == crs.construct_ids
    assert df.set_index("construct").loc["CAPAB", "n_items"] == 5
    assert df.set_index("construct").loc["TRUST", "reverse_keyed"] == "TRUST4"


def test_item_lookups_raise_keyerror(crs):
    with pytest.raises(KeyError, match="NOPE"):
        crs.item("NOPE")
    with pytest.raises(KeyError):
        crs.construct("NOPE")


def test_parse_from_text_and_library_name():
    inst, report = parse_instrument(MINIMAL.read_text(encoding="utf-8"), file="mini.yaml")
    assert report.valid and inst is not None
    assert inst.item_ids == ["CONSENT", "REGION", "TRUST1", "TRUST2", "TRUST3",
                             "TRUSTORG_POLICE", "TRUSTORG_COUNCIL", "RESIDE", "ATTN1"]
    assert inst.item("REGION").collapsed.mapping() == {1: 1, 3: 1, 2: 2, 4: 2}
    assert inst.sha256 is None  # built from text, not a file
    bad, report = parse_instrument("id: [", file="x.yaml")
    assert bad is None and report.types == ["yaml-syntax-error"]
    assert str(report.issues[0]).startswith("x.yaml:1:")


def test_load_raises_instrument_error_with_report(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("id: x\n", encoding="utf-8")
    with pytest.raises(InstrumentError) as err:
        load_instrument(p)
    missing = sorted(i.path for i in err.value.report.errors)
    assert missing == ["default_language", "languages", "scales", "sections", "title", "version"]


def test_long_ids_warn_but_load(tmp_path):
    text = MINIMAL.read_text(encoding="utf-8").replace(
        "      - id: RESIDE\n", "      - id: YEARS_LIVED_IN_THIS_NEIGHBOURHOOD\n")
    p = tmp_path / "long.yaml"
    p.write_text(text, encoding="utf-8")
    report = validate_instrument(p)
    assert report.valid and report.types == ["long-id"]
    assert report.warnings[0].line == text.splitlines().index("      - id: YEARS_LIVED_IN_THIS_NEIGHBOURHOOD") + 1
    assert report.warnings[0].path == "sections[1].items[0].id"
    with pytest.warns(InstrumentWarning, match="33 characters"):
        inst = load_instrument(p)
    assert "YEARS_LIVED_IN_THIS_NEIGHBOURHOOD" in inst.item_ids


def test_report_serialises(tmp_path):
    report = validate_instrument(Path(__file__).parents[1] / "fixtures/instruments/bad/unknown_scale.yaml")
    d = report.to_dict()
    assert d["valid"] is False and d["n_errors"] == len(report.errors) == 1
    assert d["issues"][0]["type"] == "unknown-scale-ref"
    assert "<table>" in report._repr_html_()


def test_loading_is_fast():
    import time

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            load_instrument(CRS)
    assert (time.perf_counter() - start) / 5 < 1.0


def test_docs_list_every_issue_type():
    from instruments.errors import ISSUE_TYPES

    docs = (Path(__file__).parents[2] / "docs" / "instruments.md").read_text(encoding="utf-8")
    assert [t for t in ISSUE_TYPES if f"| `{t}` |" not in docs] == []


def test_yaml_12_meanings_for_words_like_no(tmp_path):
    text = MINIMAL.read_text(encoding="utf-8").replace('label: {en: "No", fr: Non}', "label: {en: No, fr: off}")
    inst, report = parse_instrument(text)
    assert report.valid, str(report)
    assert inst.scales["yesno"].labels("en")[0] == "No"
    assert inst.scales["yesno"].labels("fr")[0] == "off"


@pytest.mark.parametrize("name", ["unknown_scale.yaml", "yaml_bad_indent.yaml", "duplicate_key.yaml"])
def test_pure_python_yaml_fallback_gives_the_same_report(monkeypatch, name):
    import yaml

    path = Path(__file__).parents[1] / "fixtures" / "instruments" / "bad" / name
    fast = validate_instrument(path)
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    slow = validate_instrument(path)
    assert [(i.type, i.line, i.path) for i in slow.issues] == [(i.type, i.line, i.path) for i in fast.issues]
