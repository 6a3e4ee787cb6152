"""Any questionnaire, any study: a questionnaire unlike crs runs end to end.

The study in tests/fixtures/studies/neighbourhood has its own constructs (safety,
belonging, civic engagement, wellbeing), two languages, a grouping variable, a
relevance rule, its own models and hypothesis, and data given as a Kobo export.
Its report must name its constructs by label, show its own path diagram and
effects, and say nothing of crs.
"""

import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from analysis.study.pipeline import run_study

bs4 = pytest.importorskip("bs4")

FIXTURE = Path(__file__).parents[1] / "fixtures" / "studies" / "neighbourhood"
CRS_WORDING = [r"Figure 1(?!\.)", "figure1", "negotiat", "Negotiat", "CULT", "TRUST", "NAVIG", "NEGOT", "REPR", "crs",
               "Community Resilience Survey", "radicalis", "top_down", "Cole & Habashi"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from instruments import load_instrument
    from instruments.export_data import write_kobo

    from analysis.simulation.simulate import simulate_responses

    root = tmp_path_factory.mktemp("own") / "neighbourhood"
    shutil.copytree(FIXTURE, root)
    inst = load_instrument(root / "wellbeing.yaml")
    data = simulate_responses((root / "population.lav").read_text(), 500, seed=3, instrument=inst,
                              missing=0.03, careless=0.02)
    (root / "data" / "raw").mkdir(parents=True)
    write_kobo(data, inst, root / "data" / "raw" / "wellbeing_kobo.csv")
    run = run_study(root / "study.yaml", progress=False, report=True)
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    return run, html, json.loads(run.results_json.read_text())


def test_every_step_succeeds_on_the_studys_own_instrument(study):
    run, _, r = study
    bad = {s.name: s.message for s in run.steps if s.status != "ok"}
    assert not bad
    assert run.ok and run.data_errors == 0  # the simulator's data pass its own validator (relevance kept)
    assert set(r["models"]) == {"main", "direct"}
    # `measurement` is built from the instrument: its four constructs by their items
    loads = {(e["lhs"], e["rhs"]) for e in r["cfa"]["estimates"] if e["op"] == "=~"}
    assert loads == {(c, f"{p}{k}") for c, p in (("SAFETY", "SAF"), ("BELONG", "BEL"), ("CIVIC", "CIV"),
                                                 ("WELLB", "WEL")) for k in (1, 2, 3)}
    assert r["model_syntax"]["measurement"].startswith("SAFETY =~ SAF1 + SAF2 + SAF3")
    assert [h["id"] for h in r["hypotheses"]] == ["H1"] and r["verdict"]["answer"] in ("yes", "no", "unclear")
    assert r["verdict"]["path"]["path"] == "WELLB ~ CIVIC"
    assert [p["lhs"] + "~" + p["rhs"] for p in r["group_paths"]["DISTRICT"]["paths"]] == ["WELLB~CIVIC"]
    assert set(r["figures"]["path_diagrams"]) == {"main", "direct"}
    # the lead model (the hypothesis's) without the respondents a quality flag marked
    sens = r["sensitivity"]
    assert sens["model"] == "main" and sens["converged"] and int(sens["n_excluded"]) > 0
    assert sens["fit"]["ntotal"] < r["models"]["main"]["fit"]["ntotal"]
    assert {(p["lhs"], p["op"], p["rhs"]) for p in sens["paths"]} == {
        (e["lhs"], e["op"], e["rhs"]) for e in r["models"]["main"]["estimates"] if e["op"] in ("~", ":=")}
    assert {e["effect"] for e in r["bootstrap"]["effects"]} == {"safety_via_civic", "belonging_via_civic",
                                                              "total_belonging"}


def test_report_names_the_constructs_by_label_and_shows_its_own_models(study):
    run, html, r = study
    soup = bs4.BeautifulSoup(html, "html.parser")
    text = " ".join(soup.get_text(" ").split())
    heads = [h.get_text(strip=True).rstrip("¶") for h in soup.find_all(["h1", "h2"])]
    assert "Wellbeing in two districts: does civic engagement matter?" in heads  # report.title
    assert "Structural model: main" in heads and "Structural model: direct" in heads
    assert "Sensitivity: without flagged respondents" in heads
    for lab in ("Perceived safety", "Sense of belonging", "Civic engagement", "Wellbeing"):
        assert lab in text
    # the glossary gives the wording in both languages
    assert "I feel safe walking here after dark." in text and "Me siento seguro caminando aquí de noche." in text
    # its own path diagram, with alt text naming its constructs
    alts = [img.get("alt", "") for img in soup.find_all("img")]
    assert all(alts) and any(a.startswith("Path diagram of main") and "Civic engagement" in a for a in alts)
    # its own paths, labelled, with the numbers of results.json
    est = {(e["rhs"], e["lhs"]): e for e in r["models"]["main"]["estimates"] if e["op"] == "~"}
    cell = f"Civic engagement (CIVIC) → Wellbeing (WELLB)"
    assert cell in text
    beta = re.sub(r"^(-?)0\.", r"\1.", f"{est[('CIVIC', 'WELLB')]['std.all']:.2f}")
    row = next(tr for tr in soup.find_all("tr") if tr.find("td") and tr.find("td").get_text() == cell)
    e = est[("CIVIC", "WELLB")]
    apa = lambda v: re.sub(r"^(-?)0\.", r"\1.", f"{v:.2f}")  # noqa: E731
    assert row.find_all("td")[-2].get_text() == beta
    assert row.find_all("td")[-1].get_text() == (f"[{apa(e['std.all'] - 1.959964 * e['std.all.se'])}, "
                                                 f"{apa(e['std.all'] + 1.959964 * e['std.all.se'])}]")
    for effect in ("safety_via_civic", "belonging_via_civic", "total_belonging"):
        assert effect in text
    assert "H1: Civic engagement carries part of the effect of belonging on wellbeing" in text
    assert "Does civic engagement explain why residents" in text  # study.yaml's description
    assert "Interview language" not in text  # the Kobo export has no language column: nothing to tabulate
    # the N behind each model, and why it differs from the sample
    n, n_main = r["sample"]["n"], r["models"]["main"]["fit"]["ntotal"]
    assert n_main < n and (f"The model uses N = {n_main} of the {n} respondents: the {n - n_main} others left at "
                           "least one of its items unanswered (listwise deletion).") in text
    # four 3-item scales are too few for the even-odd index: not computed, rather than 27% flagged
    quality = next(tr for tr in soup.find_all("tr") if tr.find("td") and tr.find("td").get_text() == "evenodd")
    assert "not computed (4 constructs: too few" in quality.get_text(" ")
    # numbered captions, and cross-references that land on them
    refs = [a["href"][1:] for a in soup.find_all("a", href=True) if a["href"].startswith(("#tbl-", "#fig-"))]
    assert refs and all(soup.find(id=r) is not None for r in refs)
    captions = [p.get_text(" ", strip=True) for p in soup.find_all("p", class_="caption")]
    assert [int(re.match(r"Table (\d+)\.", c).group(1)) for c in captions] == list(range(1, len(captions) + 1))
    # study.yaml's order, and the hypothesis's model leads the key findings
    assert heads.index("Structural model: main") < heads.index("Structural model: direct")
    box = soup.find(class_="key-findings").get_text(" ")
    assert "The model main (civic engagement mediates safety and belonging)" in " ".join(box.split())


def test_report_contains_none_of_crss_wording(study):
    _, html, _ = study
    soup = bs4.BeautifulSoup(html, "html.parser")
    text = soup.get_text(" ")
    found = [w for w in CRS_WORDING if re.search(w, text)]
    assert not found, found
    assert "measurement.lav" not in html


CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")


@needs_chromium
def test_the_report_reads_offline_and_prints_without_cutting_a_table(study, tmp_path):
    """Headless Chromium with the network cut: nothing is fetched, every figure shows; printed on
    A4 (the report's print stylesheet) every table fits the page width and the PDF holds the text."""
    playwright = pytest.importorskip("playwright.sync_api")
    pypdf = pytest.importorskip("pypdf")
    run, _, _ = study
    html = Path(run.report["outputs"]["html"])
    fetched = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 680, "height": 900})  # A4 less 15 mm margins, in CSS px

        def offline(route):
            url = route.request.url
            if not url.startswith(("file:", "data:")):
                fetched.append(url)
                return route.abort()
            return route.continue_()

        page.route("**/*", offline)
        page.goto(html.as_uri(), wait_until="load")
        assert fetched == []
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.alt])")
        assert images and all(w > 0 and alt for w, alt in images)
        page.emulate_media(media="print")
        widths = page.eval_on_selector_all(
            "table.report-table", "els => els.map(e => [e.getBoundingClientRect().right, e.scrollWidth, "
                                  "e.clientWidth])")
        assert widths and all(right <= 680.5 and scroll <= client + 1 for right, scroll, client in widths), widths
        pdf = tmp_path / "report.pdf"
        page.pdf(path=str(pdf), format="A4", margin={"top": "15mm", "bottom": "15mm", "left": "15mm",
                                                      "right": "15mm"})
        browser.close()
    text = unicodedata.normalize("NFKC", " ".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages))
    for needle in ("Key findings", "Perceived safety", "Reproducibility appendix", "belonging_via_civic"):
        assert needle in text


@needs_chromium
def test_pdf_without_quarto_through_chromium_and_a_clear_failure_without_it(study, tmp_path, monkeypatch):
    pypdf = pytest.importorskip("pypdf")
    from typer.testing import CliRunner

    import analysis.study.render as render
    from analysis.cli.main import app

    run, _, _ = study
    html = Path(run.report["outputs"]["html"])
    pdf = tmp_path / "r.pdf"
    assert render.html_to_pdf(html, pdf) == ""
    reader = pypdf.PdfReader(pdf)
    assert len(reader.pages) > 3 and reader.pages[0].mediabox.width < 700  # A4/Letter portrait pages
    monkeypatch.setattr(render, "find_chromium", lambda: None)
    monkeypatch.setitem(__import__("sys").modules, "weasyprint", None)
    monkeypatch.setattr(render, "find_quarto", lambda: None)
    res = CliRunner().invoke(app, ["report", str(run.study.path), "--format", "pdf", "--force"])
    assert res.exit_code == 1, res.output
    assert "pdf not made" in res.output and "Chromium or WeasyPrint" in res.output
