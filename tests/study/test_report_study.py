"""The study report: every section, numbers that match results.json, disclosure control, caching."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import MEASUREMENT, copy_study, make_study  # noqa: E402

from analysis.study.pipeline import run_study  # noqa: E402
from analysis.study.report import DEFAULT_TEMPLATE, render_study_report  # noqa: E402
from analysis.study.render import find_quarto  # noqa: E402

bs4 = pytest.importorskip("bs4")

SECTIONS = [
    "Key findings", "About this study", "Constructs",
    "Sample description", "Item response distributions", "Data-quality flags", "Reliability and validity",
    "CFA: fit and loadings", "Measurement invariance across groups", "Structural model: figure1",
    "Structural model: top_down", "Sensitivity: without flagged respondents", "Rival models and hypotheses", "Defined effects: bootstrap intervals",
    "Do the paths differ between groups?", "Limitations", "References", "Reproducibility appendix",
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    path = copy_study(tmp_path_factory.mktemp("report") / "s")  # fitted once already: only the report renders
    shutil.copy(DEFAULT_TEMPLATE, path.parent / "report_template.py")
    path.write_text(path.read_text() + "  template: report_template.py\n")
    run = run_study(path, progress=False, report=True, trust_template=True)  # a copy of the shipped one
    assert run.step("report").status == "ok", run.step("report").message
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    return run, html, json.loads(run.results_json.read_text())


def _tables(html):
    soup = bs4.BeautifulSoup(html, "html.parser")
    out = {}
    for t in soup.find_all("table"):
        cap = t.find_previous("p", class_="caption")
        rows = [[c.get_text(strip=True) for c in tr.find_all(["td", "th"])] for tr in t.find_all("tr")]
        # captions are numbered ("Table 7. Loadings"): key the tables by their caption's text
        out.setdefault(re.sub(r"^Table \d+\.\s*", "", cap.get_text(strip=True)) if cap else "", rows)
    return soup, out


def test_every_section_is_there_in_order(rendered):
    _, html, _ = rendered
    soup, _ = _tables(html)
    heads = [h.get_text(strip=True).rstrip("¶") for h in soup.find_all("h2")]
    assert [h for h in heads if h in SECTIONS] == SECTIONS, heads
    assert html.count("data:image/png;base64") >= 4 + 3  # 4 constructs' bars, path diagram, forest, ladder
    assert "import pandas" not in html and "#| tags" not in html  # no code in the report


def test_numbers_match_results_json(rendered):
    _, html, r = rendered
    soup, tables = _tables(html)
    text = " ".join(soup.get_text(" ").split())
    assert f"{r['sample']['n']} respondents" in text
    fit = {row[0]: row for row in tables["Fit of the measurement model"][1:]}
    header = tables["Fit of the measurement model"][0]
    cfa = r["cfa"]["fit"]
    assert fit["measurement"][header.index("CFI")] == f"{cfa['cfi']:.3f}".lstrip("0")  # APA: no leading zero
    assert fit["measurement"][header.index("RMSEA [90% CI]")].startswith(f"{cfa['rmsea']:.3f}".lstrip("0") + " [")
    assert fit["measurement"][header.index("χ²")] == f"{cfa['chisq']:.2f}"
    assert fit["measurement"][header.index("N")] == str(cfa["ntotal"])
    eff = tables["Defined effects"]
    by_name = {row[0]: row for row in eff[1:]}
    for e in r["bootstrap"]["effects"]:
        row = by_name[e["effect"]]
        assert row[1] == f"{e['est']:.3f}" and row[3] == f"{e['ci.lower']:.3f}" and row[4] == f"{e['ci.upper']:.3f}"  # one precision
    assert " ".join(r["verdict"]["text"].split()) in text
    assert f"{abs(r['verdict']['delta_aic']):.1f} points" in text
    paths = tables["Structural paths of figure1"]
    est = {(e["rhs"], e["lhs"]): e for e in r["models"]["figure1"]["estimates"] if e["op"] == "~"}
    labels = {c["id"]: c["label"] for c in r["instrument"]["constructs"]}
    assert paths[0] == ["path", "b", "SE", "95% CI", "p", "β", "β 95% CI"]
    for row in paths[1:]:
        rhs, lhs = (re.fullmatch(r"(.+) \((\w+)\)", side).groups() for side in row[0].split(" → "))
        assert labels[rhs[1]] == rhs[0] and labels[lhs[1]] == lhs[0]  # labels, not codes
        e = est[(rhs[1], lhs[1])]
        assert row[5] == re.sub(r"^(-?)0\.", r"\1.", f"{e['std.all']:.2f}")
        assert row[3] == f"[{e['ci.lower']:.3f}, {e['ci.upper']:.3f}]"
    rel = {row[0]: row for row in tables["Internal consistency"][1:]}
    for c in r["reliability"]["constructs"]:
        assert rel[f"{labels[c['construct']]} ({c['construct']})"][3] == f"{c['alpha']:.2f}".lstrip("0")
    # Fornell-Larcker and HTMT: rows and columns in one (the instrument's) order, values from results.json
    code_of = {v: k for k, v in labels.items()}
    for key, caption in (("fornell_larcker", "Discriminant validity: Fornell-Larcker criterion"),
                         ("htmt", "Discriminant validity: HTMT")):
        grid = tables[caption]
        src = {row["construct"]: row for row in r["reliability"]["validity"][key]}
        cols = [code_of[c] for c in grid[0][1:] if c in code_of]
        assert [code_of[row[0]] for row in grid[1:]] == cols == [row["construct"] for row in
                                                                 r["reliability"]["validity"][key]]
        for row in grid[1:]:
            for j, col in enumerate(cols, 1):
                assert row[j] == re.sub(r"^(-?)0\.", r"\1.", f"{src[code_of[row[0]]][col]:.2f}")
    inv = r["invariance"]["LANG"]
    assert f"Highest level of invariance supported across LANG: {inv['highest']}" in text
    assert r["instrument"]["sha256"] in text and r["inputs"][0]["sha256"] in text  # the appendix
    assert f"Seed: {r['study']['seed']}" in text
    import hashlib

    template = rendered[0].study.root / "report_template.py"
    assert hashlib.sha256(template.read_bytes()).hexdigest() in text  # the template is an input too


def test_touching_only_the_template_rerenders_without_refitting(rendered):
    run, _, _ = rendered
    template = run.study.root / "report_template.py"
    template.write_text(template.read_text() + '\n# %% [markdown]\n# Template edited after the fit.\n')
    again = run_study(run.study.path, progress=False, report=True, trust_template=True)
    log = {s["step"]: s for s in json.loads(again.run_log.read_text())["steps"]}
    fitted = [n for n in log if n not in ("bundle", "report")]
    assert all(log[n]["cached"] for n in fitted), {n: log[n]["cached"] for n in fitted}
    assert log["report"]["status"] == "ok" and not log["report"]["cached"]
    assert "Template edited after the fit." in Path(again.report["outputs"]["html"]).read_text(encoding="utf-8")
    # nothing changed at all: the report itself is not re-rendered
    third = run_study(run.study.path, progress=False, report=True, trust_template=True)
    assert third.step("report").cached


def test_a_small_cell_never_reaches_the_report(tmp_path):
    from instruments import load_instrument

    from analysis.study.demo import simulate_community_survey

    inst = load_instrument("crs")
    data = simulate_community_survey(300, seed=5, instrument=inst)
    data.loc[data.index[:4], "ETHNIC"] = 18  # four respondents in "Other ethnic group"
    data.loc[data.index[:3], "GENDER"] = 3
    path = make_study(tmp_path / "s", data=data, replications=0, min_group_size=30, groups=("ETHNIC5",),
                      models=[("measurement", MEASUREMENT)], comparisons=())
    run = run_study(path, progress=False, report=True)
    r = json.loads(run.results_json.read_text())
    eth = {row["category"]: row["n"] for row in r["sample"]["tables"]["ETHNIC5"]["rows"]}
    # the four are merged, before any analysis, with the next smallest group into a residual
    # of at least 10 (hiding them in one table would leave them to subtraction from the total)
    assert "Other ethnic group" not in eth and int(eth["Other (merged)"]) >= 10 and eth["Total"] == "300"
    assert "Other ethnic group" in r["disclosure"]["handled"]["ETHNIC5"]
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    soup, tables = _tables(html)
    counts = [t for cap, t in tables.items() if cap.startswith(("Group:", "ETHNIC5 by", "Gender", "Age",
                                                                "Interview language", "Quality flags",
                                                                "Mean construct scores"))]
    assert counts
    for t in counts:
        for row in t[1:]:
            for cell in row[1:]:
                if re.fullmatch(r"\d+", cell):
                    assert int(cell) == 0 or int(cell) >= 10, (t[0], row)
    assert not [row for row in tables["Group: ETHNIC5"] if row[0] == "Other ethnic group"]
    means = next(t for cap, t in tables.items() if cap.startswith("Mean construct scores by ETHNIC5"))
    assert not [row for row in means if row[0] == "Other ethnic group"]  # no statistic for four people
    assert all(int(row[1]) >= 10 and re.fullmatch(r"\d\.\d\d", row[2]) for row in means[1:])
    assert "Area 1" not in html and "Area 2" not in html  # free text (AREA) never enters the report


@pytest.mark.skipif(find_quarto() is None, reason="no quarto binary on PATH or QUARTO_PATH: the Quarto path is untested here")
def test_the_same_template_renders_with_quarto(rendered, tmp_path):
    run, _, r = rendered
    info = render_study_report(run.results_dir, tmp_path, engine="quarto", force=True)
    html = Path(info["outputs"]["html"]).read_text(encoding="utf-8")
    assert info["engine"] == "quarto"
    for s in SECTIONS:
        assert s in html
    assert f"{r['cfa']['fit']['cfi']:.3f}" in html


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium: the report is parsed, not opened in a browser")
def test_report_opens_in_headless_chromium(rendered):
    playwright = pytest.importorskip("playwright.sync_api")
    run, _, r = rendered
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        page.goto(Path(run.report["outputs"]["html"]).as_uri())
        body = page.inner_text("body")
        browser.close()
    assert "Reproducibility appendix" in body and f"{r['sample']['n']} respondents" in body
