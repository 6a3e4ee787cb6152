"""The report shows what the study has, as a journal would print it: fixed parameters without SE
or interval, the verdict in the report's labels and APA numbers, one precision in the bootstrap
table, a true sentence about merged small groups, and no section with nothing in it.
A questionnaire of the tests (tests/fixtures/instruments/tiny_two_constructs.yaml), not crs."""

import re
from pathlib import Path

import pytest

from analysis.study.pipeline import run_study

bs4 = pytest.importorskip("bs4")

INSTRUMENT = Path(__file__).parents[1] / "fixtures" / "instruments" / "tiny_two_constructs.yaml"
POPULATION = "CALM =~ 0.8*CA1 + 0.7*CA2 + 0.6*CA3\nJOY =~ 0.8*JO1 + 0.7*JO2 + 0.6*JO3\nJOY ~ 0.5*CALM\n"
STUDY = """\
title: Calm and joy
instrument: tiny.yaml
data:
  - file: tiny.csv
{rest}
seed: 1
report:
  formats: [html]
"""
FULL = """\
groups: [TOWN]
min_group_size: 50
models:
  - measurement
  - {name: calm_joy, syntax: "CALM =~ CA1 + CA2 + CA3\\nJOY =~ JO1 + JO2 + JO3\\nJOY ~ b*CALM\\ntwice := 2*b\\n"}
  - {name: apart, syntax: "CALM =~ CA1 + CA2 + CA3\\nJOY =~ JO1 + JO2 + JO3\\nJOY ~ 0*CALM\\n"}
hypotheses:
  - {id: H1, claim: Calm people are joyful, model: calm_joy, against: apart, path: JOY ~ CALM}
group_paths: [JOY ~ CALM]
bootstrap:
  replications: 20
  model: calm_joy
disclosure:
  k: 10
  small_groups: merge
"""


def _study(root: Path, rest: str) -> Path:
    from instruments import load_instrument

    from analysis.simulation.simulate import simulate_responses

    root.mkdir()
    # a third town with 6 respondents: under k = 10, merged with the next smallest town
    (root / "tiny.yaml").write_text(INSTRUMENT.read_text().replace(
        "      - {code: 2, label: {en: South}}", "      - {code: 2, label: {en: South}}\n      - {code: 3, label: {en: East}}"))
    data = simulate_responses(POPULATION, 400, seed=4, instrument=load_instrument(INSTRUMENT))
    data["TOWN"] = [1] * 230 + [2] * 164 + [3] * 6
    data.to_csv(root / "tiny.csv", index=False)
    (root / "study.yaml").write_text(STUDY.format(rest=rest), encoding="utf-8")
    return root / "study.yaml"


def _report(path: Path):
    run = run_study(path, progress=False, report=True)
    assert not run.failed, [(s.name, s.message) for s in run.steps if s.status == "failed"]
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    soup = bs4.BeautifulSoup(html, "html.parser")
    heads = [h.get_text(strip=True).rstrip("¶") for h in soup.find_all(["h2"])]
    return run, soup, " ".join(soup.get_text(" ").split()), heads


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return _report(_study(tmp_path_factory.mktemp("full") / "s", FULL))


def _table(soup, caption: str):
    cap = next(p for p in soup.find_all("p", class_="caption") if p.get_text(" ", strip=True).endswith(caption))
    return cap.find_next("table")


def test_a_fixed_path_is_shown_as_fixed_without_se_or_interval(full):
    _, soup, _, _ = full
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")]
            for tr in _table(soup, "Structural paths of apart").find_all("tr") if tr.find("td")]
    assert len(rows) == 1
    path, b, se, ci, p, beta, beta_ci = rows[0]
    assert path == "Calm (CALM) → Joy (JOY)"
    assert b == "0.000 (fixed)" and se == ci == p == beta_ci == "—"
    assert "0.000 |" not in soup.get_text() and "[0.000, 0.000]" not in soup.get_text()
    # a free path keeps its numbers
    cells = [td.get_text(strip=True) for td in _table(soup, "Structural paths of calm_joy").find_all("td")]
    assert re.fullmatch(r"0\.\d{3}", cells[2]) and re.fullmatch(r"\[-?\d\.\d{3}, -?\d\.\d{3}\]", cells[3])


def test_the_verdict_names_constructs_by_label_in_apa_numbers(full):
    _, _, text, _ = full
    sentence = re.search(r"In calm_joy, (.*?) has a standardized coefficient of (\S+) \(", text)
    assert sentence, text[:2000]
    assert sentence.group(1) == "Calm → Joy"
    assert re.fullmatch(r"-?\.\d\d", sentence.group(2))  # .45, not 0.45
    assert "CALM → JOY" not in text


def test_the_bootstrap_table_has_one_precision(full):
    _, soup, text, heads = full
    assert "Defined effects: bootstrap intervals" in heads
    assert "Rival models that are not nested" in text and "Group comparisons rest on" in text
    cells = [td.get_text(strip=True) for td in _table(soup, "Defined effects").find_all("td")]
    numbers = [c for c in cells[1:] if re.fullmatch(r"-?\.?\d*\.?\d+", c)]
    assert numbers and {len(c.split(".")[1]) for c in numbers} == {3}


def test_the_merge_sentence_names_only_the_small_group_and_what_it_joined(full):
    _, _, text, _ = full
    sentence = re.search(r"TOWN: .*?\(merged\) \.", text).group(0)  # (the residual's name is in italics)
    assert sentence == ("TOWN: East has fewer than 10 respondents, so it is analysed and reported together with "
                        "South as Other (merged) .")


def test_a_measurement_only_study_shows_no_empty_section(tmp_path):
    _, _, text, heads = _report(_study(tmp_path / "m", "models: [measurement]\nbootstrap:\n  replications: 0\n"))
    assert "CFA: fit and loadings" in heads
    for empty in ("Rival models and hypotheses", "Defined effects: bootstrap intervals",
                  "Do the paths differ between groups?", "Measurement invariance across groups"):
        assert empty not in heads
    assert "No bootstrap" not in text and "No group comparison" not in text
    # nor a limitation of analyses it did not run
    assert "Rival models that are not nested" not in text and "Group comparisons rest on" not in text
    assert "Careless responders are flagged but kept" in text
