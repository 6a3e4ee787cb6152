"""Consent and withdrawal as the consent text promises (issue 14, item 7).

Withdrawal by reference code on the respondent's page and with
``resilience withdraw``: the answers leave the web store, the study store and
every later analysis; an audit record without answers stays. The survey's
title and every interface string come from the instrument in each language,
and ``instrument validate`` says which would fall back to English.
(Declining consent is in tests/instruments/web/test_web_survey.py.)
"""

from __future__ import annotations

import random
import re
import warnings

import pytest
from typer.testing import CliRunner

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from analysis.cli.main import app as cli
from instruments import load_instrument, parse_instrument
from instruments.interface import INTERFACE_KEYS, UI
from instruments.store import Study
from instruments.web import create_app, write_responses_csv
from tests._web_support import CSRF, fields, plan_answers, respond

MINI = "tests/fixtures/instruments/minimal.yaml"


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


def _withdraw_on_page(app, code: str, lang: str = "en", client=None):
    client = client or TestClient(app)
    page = client.get(f"/withdraw?lang={lang}")
    return client.post("/withdraw", data={"_csrf": CSRF.search(page.text).group(1), "_lang": lang, "code": code})


def test_withdrawal_page_erases_the_answers_and_keeps_an_audit_record(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, admin_password="pw")
    rng = random.Random(3)
    codes = [respond(TestClient(app), crs, plan_answers(crs, rng), "ur") for _ in range(3)]
    done = TestClient(app)
    code = respond(done, crs, plan_answers(crs, rng), "ur")
    page = done.get("/done").text
    assert 'href="/withdraw?lang=ur"' in page  # the thank-you page says where to withdraw
    r = _withdraw_on_page(app, code.upper(), "ur")  # as typed from the screen, case aside
    assert r.status_code == 200 and "آپ کے جوابات حذف کر دیے گئے ہیں" in r.text and 'dir="rtl"' in r.text
    storage = app.state.storage
    assert [x["response_id"] for x in storage.responses()] == codes and storage.count() == 3
    audit = storage.withdrawals()
    assert list(audit["response_id"]) == [code] and list(audit["channel"]) == ["web"]
    assert not {"answers", "timings"} & set(audit.columns)
    import sqlite3

    con = sqlite3.connect(tmp_path / "web" / "responses.sqlite")
    answers, timings = con.execute("SELECT answers, timings FROM web_responses WHERE response_id = ?", (code,)).fetchone()
    assert (answers, timings) == ("{}", "{}")  # erased, not just hidden
    csv = write_responses_csv(storage, crs, tmp_path / "web.csv").read_text(encoding="utf-8")
    assert code not in csv and all(c in csv for c in codes)
    assert "1 withdrawn" in TestClient(app).get("/admin", headers={"authorization": "Basic YTpwdw=="}).text
    # the same code again: already gone, still one record
    assert _withdraw_on_page(app, code).status_code == 200 and len(storage.withdrawals()) == 1


def test_wrong_codes_are_refused_and_guessing_them_is_limited(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    code = respond(TestClient(app), crs, plan_answers(crs, random.Random(1)), "en")
    r = _withdraw_on_page(app, "0123456789abcdef")
    assert r.status_code == 404 and "No answers with this reference code" in r.text and 'aria-invalid="true"' in r.text
    forged = TestClient(app).post("/withdraw", data={"code": code})
    assert forged.status_code == 403 and app.state.storage.count() == 1  # CSRF: no form from elsewhere
    statuses = [_withdraw_on_page(app, f"{i:016x}").status_code for i in range(12)]
    assert statuses[:9] == [404] * 9 and set(statuses[9:]) == {429}
    assert _withdraw_on_page(app, code).status_code == 429 and app.state.storage.count() == 1
    other = TestClient(app, client=("192.0.2.50", 1))
    assert _withdraw_on_page(app, code, client=other).status_code == 200 and app.state.storage.count() == 0


def test_cli_withdraw_removes_the_answers_from_both_stores_and_later_imports(tmp_path, crs):
    study = tmp_path / "study"
    app = create_app(crs, study_dir=study)
    rng = random.Random(8)
    codes = [respond(TestClient(app), crs, plan_answers(crs, rng), "en") for _ in range(3)]
    early = tmp_path / "early-export.csv"
    write_responses_csv(app.state.storage, crs, early)
    codes.append(respond(TestClient(app), crs, plan_answers(crs, rng), "en"))
    r = CliRunner().invoke(cli, ["serve-export", "crs", "--study", str(study), "-o", str(tmp_path / "w1.csv"),
                                 "--import"])
    assert r.exit_code == 0, r.output
    assert len(Study(study).responses()) == 4

    r = CliRunner().invoke(cli, ["withdraw", "--study", str(study), codes[1]])
    assert r.exit_code == 0, r.output
    assert "answers erased" in r.output and "1 response deleted" in r.output and "audit record" in r.output
    stored = Study(study).responses()
    assert list(stored["respondent_id"]) == [codes[0], codes[2], codes[3]]
    audit = Study(study).withdrawals()
    assert list(audit.columns) == ["respondent_id", "withdrawn_at", "n_removed", "channel"]
    assert audit.iloc[0]["respondent_id"] == codes[1] and audit.iloc[0]["n_removed"] == 1
    issues = Study(study).issues()
    assert issues.empty or codes[1] not in set(issues["respondent_id"].astype(str))
    assert codes[1] not in {x["response_id"] for x in app.state.storage.responses()}

    # an export made before the withdrawal, imported later: the withdrawn answers stay out
    result = Study(study).import_file(early, crs, wave="again")
    assert result.added and result.n_rows == 2
    assert "withdrawn" in set(result.report.issues["type"])
    assert codes[1] not in set(Study(study).responses()["respondent_id"])

    r = CliRunner().invoke(cli, ["withdraw", "--study", str(study), "feedfacefeedface"])
    assert r.exit_code == 1 and "no response with this reference code" in r.output and "--record" in r.output
    assert len(Study(study).withdrawals()) == 1
    r = CliRunner().invoke(cli, ["withdraw", "--study", str(tmp_path / "nope"), codes[0]])
    assert r.exit_code == 2 and "no such study folder" in r.output


def test_page_withdrawals_reach_the_study_store(tmp_path, crs):
    study = tmp_path / "study"
    app = create_app(crs, study_dir=study)
    rng = random.Random(9)
    codes = [respond(TestClient(app), crs, plan_answers(crs, rng), "en") for _ in range(3)]
    out = tmp_path / "w.csv"
    assert CliRunner().invoke(cli, ["serve-export", "crs", "--study", str(study), "-o", str(out), "--import"]).exit_code == 0
    assert _withdraw_on_page(app, codes[0]).status_code == 200
    from instruments.web.withdraw import withdrawn_codes

    assert withdrawn_codes(study) == {codes[0]}  # the pipeline sees it at once
    r = CliRunner().invoke(cli, ["withdraw", "--study", str(study)])
    assert r.exit_code == 0 and "1 withdrawal from the web survey applied" in r.output, r.output
    assert codes[0] not in set(Study(study).responses()["respondent_id"])
    assert list(Study(study).withdrawals()["channel"]) == ["web"]
    r = CliRunner().invoke(cli, ["withdraw", "--study", str(study)])
    assert "0 withdrawals" in r.output  # applied once


def test_a_withdrawn_respondent_leaves_every_later_analysis(tmp_path):
    from analysis.study.pipeline import run_study
    from tests._pipeline_study import MEASUREMENT, make_study

    path = make_study(tmp_path / "s", n=120, models=[("measurement", MEASUREMENT)], comparisons=(), groups=(),
                      replications=0)
    first = run_study(path, progress=False, report=False)
    n_before = first.results["validation"]["n_rows"]
    from instruments.ingest import import_responses

    ids = import_responses(tmp_path / "s" / "data" / "raw" / "survey_kobo.csv", load_instrument("crs")).data["respondent_id"]
    code = str(ids.iloc[5])
    r = CliRunner().invoke(cli, ["withdraw", "--study", str(tmp_path / "s"), code])
    assert r.exit_code == 1  # only in a data file: refused without --record (a typo must not look withdrawn)
    r = CliRunner().invoke(cli, ["withdraw", "--study", str(tmp_path / "s"), code, "--record"])
    assert r.exit_code == 0 and "leaves this code out" in r.output, r.output
    second = run_study(path, progress=False, report=False)
    imported = next(s for s in second.steps if s.name == "import")
    assert imported.status == "ok" and not imported.cached  # the cache does not hide the withdrawal
    assert second.results["validation"]["n_rows"] == n_before - 1


# --- interface wording from the instrument -------------------------------------------

SOMALI = {"title": "Sahanka xaafadda", "next": "Xiga", "back": "Dib u noqo", "save": "Kaydi oo goor dambe sii wad",
          "submit": "Dir jawaabahayga", "progress": "Bogga {n} ee {total}", "done_title": "Mahadsanid",
          "consent_title": "Ku saabsan sahankan", "language": "Luqadda", "skip": "U gudub su'aalaha"}


def _somali_instrument(tmp_path, *, complete: bool = True):
    """minimal.yaml with Somali in place of French; the interface in Somali (all of it, or a few keys)."""
    text = open(MINI, encoding="utf-8").read()
    head, _, _ = text.partition("# the web survey's wording in French")
    head = head.replace("fr:", "so:").replace("[en, fr]", "[en, so]")
    keys = INTERFACE_KEYS if complete else list(SOMALI)
    lines = ["interface:"]
    for k in keys:
        word = SOMALI.get(k) or "(so) " + UI["en"].get(k, "")  # a stand-in wording, marked as Somali
        lines.append(f"  {k}: {{so: {word!r}}}".replace("{so: '", '{so: "').replace("'}", '"}'))
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "somali.yaml"
    path.write_text(head + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_somali_survey_shows_no_english_interface(tmp_path):
    path = _somali_instrument(tmp_path)
    inst = load_instrument(path)
    app = create_app(inst, study_dir=tmp_path)
    client = TestClient(app)
    page = client.get("/?lang=so").text
    assert "<title>Ku saabsan sahankan · Sahanka xaafadda</title>" in page
    assert '<p class="survey-title">Sahanka xaafadda</p>' in page and ">Xiga</button>" in page
    english = [w for k, w in UI["en"].items() if "{" not in w and len(w) > 3]
    shown = re.sub(r"<[^>]+>", " ", page)
    assert [w for w in english if w in shown] == []
    r = client.post("/page/0", data={**fields(page), "_lang": "so", "CONSENT": "1"})
    assert "Bogga 2 ee" in r.text and "Dib u noqo" in r.text and "Page 2" not in r.text
    # English respondents keep the instrument's own title and the shipped wording
    assert ">Next</button>" in TestClient(app).get("/?lang=en").text


def test_validate_reports_interface_strings_that_would_be_english(tmp_path):
    path = _somali_instrument(tmp_path, complete=False)
    r = CliRunner().invoke(cli, ["instrument", "validate", str(path), "--format", "text"])
    assert r.exit_code == 0, r.output  # a warning: the questionnaire itself is fine
    line = next(ln for ln in r.output.splitlines() if "untranslated-interface" in ln)
    assert "no 'so' wording for required, invalid, number" in line and "(warning)" in line
    assert f"({len(INTERFACE_KEYS) - len(SOMALI)} in all)" in line
    full = _somali_instrument(tmp_path / "full", complete=True)
    r = CliRunner().invoke(cli, ["instrument", "validate", str(full), "--format", "text"])
    assert r.exit_code == 0 and "untranslated-interface" not in r.output
    # loading for analysis stays quiet about web wording
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_instrument(path)


@pytest.mark.parametrize("block, kind", [
    ("interface:\n  nxt: {en: Go}\n", "unknown-interface-key"),
    ("interface:\n  progress: {fr: 'Page {n}'}\n", "interface-placeholder"),
    ("interface:\n  progress: {fr: 'Page {n} sur {total} }'}\n", "interface-placeholder"),
    ("interface:\n  next: {de: Weiter}\n", "unknown-language"),
    ("interface:\n  next: {fr: ''}\n", "missing-translation"),
])
def test_bad_interface_wording_is_located(block, kind):
    text = open(MINI, encoding="utf-8").read().partition("# the web survey's wording in French")[0] + block
    inst, report = parse_instrument(text, file="m.yaml")
    assert inst is None and kind in report.types
    issue = next(i for i in report.issues if i.type == kind)
    assert issue.line is not None and issue.path.startswith("interface")
    if kind == "unknown-interface-key":
        assert "did you mean 'next'" in issue.message
