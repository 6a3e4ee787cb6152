"""The web survey in-process (Starlette's TestClient): pages, languages, checks, resume, export."""

from __future__ import annotations

import random
import re
import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from instruments import load_instrument
from instruments.score import score
from instruments.store import Study
from instruments.web import build_pages, check_page, create_app, write_responses_csv
from tests._web_support import CSRF, fields, page_form, plan_answers, respond

MINI = "tests/fixtures/instruments/minimal.yaml"


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


@pytest.fixture(scope="module")
def mini():
    return load_instrument(MINI)


def test_pages_consent_first_then_one_per_section(crs, mini):
    pages = build_pages(crs)
    assert [p.key for p in pages] == [s.id for s in crs.sections]
    assert pages[0].consent and [it.id for it in pages[0].items] == ["CONSENT"]
    # mini keeps CONSENT inside S1: it moves to a page of its own
    mp = build_pages(mini)
    assert [p.key for p in mp] == ["consent", "S1", "S2"]
    assert "CONSENT" not in [it.id for it in mp[1].items]


def test_consent_page_languages_and_headers(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    r = client.get("/")
    assert r.status_code == 200
    assert '<html lang="en" dir="ltr">' in r.text
    assert crs.consent.text["en"][:40] in r.text
    assert 'value="lang-ur" formnovalidate' in r.text and 'hreflang="en" aria-current="true"' in r.text
    assert "<progress" in r.text and "Page 1 of 10" in r.text
    h = r.headers
    assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
    assert re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", r.text) is None  # no inline code
    ur = client.get("/?lang=ur")
    assert '<html lang="ur" dir="rtl">' in ur.text and crs.consent.text["ur"][:30] in ur.text
    js = client.get("/relevance.js")
    assert js.status_code == 200 and '"AGEBAND": function (answers)' in js.text


def test_likert_grid_is_a_radio_table(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    r = client.get("/")
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1", "_action": "next"}, follow_redirects=False)
    answers = plan_answers(crs, random.Random(3))
    page1 = build_pages(crs)[1]
    r = client.post("/page/1", data={**fields(client.get("/page/1").text), **page_form(page1, answers)},
                    follow_redirects=False)
    assert r.headers["location"] == "/page/2?lang=en"
    html = client.get("/page/2").text
    assert html.count('role="radiogroup"') == 8  # CULT1-4, PART1-4 share agree5
    assert '<th scope="col">Strongly agree</th>' in html
    assert 'aria-labelledby="text-CULT1"' in html and '<th scope="row" id="text-CULT1">' in html
    assert html.count('name="CULT1"') == 7  # five codes and two missing codes
    assert '<fieldset class="grid">' in html and "<legend" in html


def test_check_page_codes_bounds_required_and_skips(mini):
    pages = build_pages(mini)
    s1, s2 = pages[1], pages[2]
    # REGION 3 makes TRUST1 irrelevant: its answer is dropped, not stored
    vals, errors, bad = check_page(mini, s1, {"REGION": ["3"], "TRUST1": ["2"], "TRUST2": ["1"], "TRUST3": ["3"]},
                                   {"CONSENT": 1})
    assert vals == {"REGION": 3, "TRUST2": 1, "TRUST3": 3} and errors == {} and not bad
    vals, errors, bad = check_page(mini, s1, {"REGION": ["9"], "TRUST2": ["1"]}, {"CONSENT": 1})
    assert errors["REGION"][0] == "invalid" and bad
    assert errors["TRUST3"] == ("required", {})
    vals, errors, bad = check_page(mini, s2, {"RESIDE": ["101"], "ATTN1": ["1"]}, {"CONSENT": 1})
    assert errors == {"RESIDE": ("range", {"min": "0", "max": "100"})} and not bad
    vals, errors, _ = check_page(mini, s2, {"RESIDE": ["4.5"], "ATTN1": ["1"]}, {"CONSENT": 1})
    assert errors["RESIDE"][0] == "whole"
    vals, errors, _ = check_page(mini, s2, {"RESIDE": [""], "RESIDE__missing": ["-9"], "ATTN1": ["-9"]}, {"CONSENT": 1})
    assert vals == {"RESIDE": -9, "ATTN1": -9} and errors == {}


def test_required_item_is_asked_again(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    r = client.get("/")
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1"}, follow_redirects=False)
    html = client.get("/page/1").text
    r = client.post("/page/1", data={**fields(html), "AGEBAND": "2", "_action": "next"}, follow_redirects=False)
    assert r.status_code == 200 and "Please answer this question." in r.text
    assert r.text.count('class="error"') == 5  # GENDER ETHNIC RELIGION LANG RESIDE; AREA is optional
    assert 'value="2" checked' in r.text  # what was answered is kept on the page


def test_number_out_of_range_is_tied_to_its_field(tmp_path, mini):
    client = TestClient(create_app(mini, study_dir=tmp_path))
    r = client.get("/")
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1"})
    html = client.get("/page/1").text
    client.post("/page/1", data={**fields(html), "REGION": "1", "TRUST1": "2", "TRUST2": "2", "TRUST3": "2"})
    html = client.get("/page/2").text
    r = client.post("/page/2", data={**fields(html), "RESIDE": "140", "ATTN1": "2"})
    assert r.status_code == 200 and "Please enter a number from 0 to 100." in r.text
    field = re.search(r'<input type="number"[^>]*>', r.text).group(0)
    assert 'aria-invalid="true"' in field and 'aria-describedby="err-RESIDE"' in field
    assert 'id="err-RESIDE"' in r.text and 'href="#q-RESIDE"' in r.text  # and listed in the summary
    assert '<a class="skip" href="#main">Skip to the questions</a>' in r.text
    assert "<title>Some answers need your attention. · " in r.text  # announced first when the page loads


def test_declined_consent_ends_on_a_thank_you_page_recorded_at_once(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    r = client.get("/")
    r = client.post("/page/0", data={**fields(r.text), "CONSENT": "0"}, follow_redirects=False)
    # no "Ready to submit" page: the refusal is stored before the answer to this request
    assert r.status_code == 303 and r.headers["location"] == "/done" and r.headers["x-response-id"]
    rows = app.state.storage.responses()
    assert len(rows) == 1 and rows[0]["answers"] == {"CONSENT": 0}
    assert rows[0]["response_id"] == r.headers["x-response-id"]
    done = client.get("/done").text
    assert "You chose not to take part" in done and "Ready to submit" not in done
    assert app.state.storage.drafts_open() == 0


def test_switching_language_keeps_the_answers_on_the_page(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    r = client.get("/")
    assert 'form="survey" name="_action" value="lang-ur" formnovalidate' in r.text
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1"})
    html = client.get("/page/1").text
    # half the page answered, then the respondent picks Urdu: nothing typed is lost, no error shown
    r = client.post("/page/1", data={**fields(html), "AGEBAND": "3", "_lang": "en", "_action": "lang-ur"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/page/1?lang=ur"
    page = client.get(r.headers["location"]).text
    assert 'dir="rtl"' in page and 'id="AGEBAND-3" name="AGEBAND" value="3" checked' in page
    assert 'class="error"' not in page and "saved" not in page.split("<main")[1][:200]
    draft = app.state.storage.draft(next(iter(_draft_hashes(tmp_path))))
    assert draft["language"] == "ur" and draft["answers"] == {"CONSENT": 1, "AGEBAND": 3}
    # an unknown language in the button keeps the current one
    r = client.post("/page/1", data={**fields(page), "_lang": "ur", "_action": "lang-xx"}, follow_redirects=False)
    assert r.headers["location"] == "/page/1?lang=ur"


def _draft_hashes(study):
    con = sqlite3.connect(study / "web" / "responses.sqlite")
    try:
        return [row[0] for row in con.execute("SELECT session_hash FROM web_drafts")]
    finally:
        con.close()


def test_urdu_respondent_sees_urdu_to_the_end(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    r = client.get("/?lang=ur")
    r = client.post("/page/0", data={**fields(r.text), "CONSENT": "1", "_lang": "ur"})
    # the review page: Urdu wording, where the respondent is, a way to switch language
    r = client.get("/page/1?lang=ur")
    assert "صفحہ 2 از 10" in r.text and "Page" not in r.text
    assert 'value="lang-en"' in r.text  # the switcher, as a button of the page's form
    client.cookies.clear()
    r = client.get("/?lang=ur")
    r = client.post("/page/0", data={**fields(r.text), "CONSENT": "0", "_lang": "ur"})
    assert r.url.path == "/done" and 'dir="rtl"' in r.text
    assert "آپ نے حصہ نہ لینے کا انتخاب کیا" in r.text and "آپ کا حوالہ کوڈ" in r.text
    assert 'href="/done?lang=en"' in r.text and "reference code" in client.get("/done?lang=en").text
    # refusals are worded in the respondent's language too
    r = client.post("/page/0", data={"_csrf": "forged", "_lang": "ur"})
    assert r.status_code == 403 and "فارم کی مدت ختم ہو گئی ہے" in r.text and "expired" not in r.text


def test_save_and_resume_by_link(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    first = TestClient(app)
    r = first.get("/?lang=ur")
    first.post("/page/0", data={**fields(r.text), "CONSENT": "1", "_lang": "ur"}, follow_redirects=False)
    html = first.get("/page/1").text
    r = first.post("/page/1", data={**fields(html), "_lang": "ur", "_action": "save", "AGEBAND": "3", "GENDER": "2"},
                   follow_redirects=False)
    saved = first.get(r.headers["location"]).text
    link = re.search(r'id="resume-link" href="([^"]+)"', saved).group(1)
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes
    # a new browser (no cookie) opens the link and finds its answers and language
    assert 'dir="ltr" class="resume-link"' in saved  # the address reads left to right inside Urdu text
    later = TestClient(app)
    path = link.replace("http://testserver", "")
    # opening the link (or a mail scanner fetching it) only shows a button
    r = later.get(path, follow_redirects=False)
    assert r.status_code == 200 and f'action="{path}"' in r.text and "اپنا سروے جاری رکھیں" in r.text
    assert later.get(path, follow_redirects=False).status_code == 200
    r = later.post(path, data={"_csrf": CSRF.search(r.text).group(1)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/page/1?lang=ur"
    assert r.cookies["rs_sid"] != token  # a fresh session: the link is used up
    page = later.get(r.headers["location"]).text
    assert 'id="AGEBAND-3" name="AGEBAND" value="3" checked' in page and 'dir="rtl"' in page
    # whoever else holds the link (or the old browser's cookie) can no longer read these answers
    assert TestClient(app).post(path, follow_redirects=False).status_code == 404
    assert first.get("/page/1", follow_redirects=False).headers["location"].startswith("/?lang=")
    assert later.get("/resume/" + "x" * 43, follow_redirects=False).status_code == 404
    # the database keeps only a hash of the token
    con = sqlite3.connect(tmp_path / "web" / "responses.sqlite")
    dump = "\n".join(con.iterdump())
    assert token not in dump and "sqlite" in app.state.storage.url


def test_full_response_exports_imports_and_scores_exactly(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    rng = random.Random(7)
    planned = {}
    for i in range(12):
        client.cookies.clear()
        answers = plan_answers(crs, rng)
        rid = respond(client, crs, answers, ["en", "ur"][i % 2])
        planned[rid] = answers
    storage = app.state.storage
    assert storage.count() == 12
    rows = storage.responses()
    assert {r["response_id"]: r["answers"] for r in rows} == planned
    for r in rows:  # metadata of every response
        assert r["instrument_id"] == "crs" and r["instrument_version"] == crs.version
        assert set(r["timings"]) == {p.key for p in build_pages(crs)}
        assert r["duration_s"] > 0 and r["ended_at"] > r["started_at"]
    cols = {row[1] for row in sqlite3.connect(tmp_path / "web" / "responses.sqlite")
            .execute("PRAGMA table_info(web_responses)")}
    assert not {c for c in cols if "ip" in c.split("_") or "agent" in c}  # no IP address, no user agent
    assert "testclient" not in "".join(sqlite3.connect(tmp_path / "web" / "responses.sqlite").iterdump())

    csv = write_responses_csv(storage, crs, tmp_path / "web.csv")
    result = Study(tmp_path / "study").import_file(csv, crs)
    assert result.added and result.n_rows == 12 and result.report.n_errors == 0
    imported = Study(tmp_path / "study").responses().set_index("respondent_id").loc[list(planned)]
    assert list(imported["language"]) == ["en", "ur"] * 6
    assert set(imported["form_version"]) == {crs.version}
    # the scores from the store equal the scores of the planned answers
    expected = pd.DataFrame.from_records([planned[k] for k in planned], index=list(planned))
    got = score(imported, crs).table
    want = score(expected, crs).table
    for c in crs.construct_ids:
        np.testing.assert_array_equal(got[c].to_numpy(float), want[c].to_numpy(float))
    text = [planned[k].get("AREA") for k in planned]
    assert [None if pd.isna(v) else v for v in imported["AREA"]] == text  # '=1+1' too (apostrophe undone)
    # re-importing is a no-op
    assert not Study(tmp_path / "study").import_file(csv, crs).added


def test_cli_serve_export_imports_into_the_study(tmp_path, crs):
    from typer.testing import CliRunner

    from analysis.cli.main import app as cli

    web = create_app(crs, study_dir=tmp_path)
    client = TestClient(web)
    rid = respond(client, crs, plan_answers(crs, random.Random(9)), "ur")
    out = tmp_path / "web.csv"
    r = CliRunner().invoke(cli, ["serve-export", "crs", "--study", str(tmp_path), "-o", str(out), "--import"])
    assert r.exit_code == 0, r.output
    assert f"{out}: 1 response\n" in r.output and "added 1 rows" in r.output
    stored = Study(tmp_path).responses()
    assert list(stored["respondent_id"]) == [rid] and list(stored["language"]) == ["ur"]
    r = CliRunner().invoke(cli, ["serve-export", "crs", "-o", str(out), "--import"])
    assert r.exit_code == 2 and "--import needs --study" in r.output
    # a mistyped study folder: refused, and no empty store left behind
    typo = tmp_path / "stduy"
    r = CliRunner().invoke(cli, ["serve-export", "crs", "--study", str(typo), "-o", str(out)])
    assert r.exit_code == 2 and "no web survey responses here" in r.output and not typo.exists()


def test_cli_serve_refuses_a_port_in_use(tmp_path):
    import socket

    from typer.testing import CliRunner

    from analysis.cli.main import app as cli

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = CliRunner().invoke(cli, ["serve", "crs", "--study", str(tmp_path), "--port", str(port)])
    assert r.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.output and "--port" in r.output
    assert not (tmp_path / "web").exists()


def test_resume_link_uses_the_public_address(tmp_path, crs):
    from instruments.web import SurveyConfig

    app = create_app(crs, study_dir=tmp_path, config=SurveyConfig(public_url="https://survey.example.org/"))
    client = TestClient(app)
    r = client.get("/")
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1"})
    html = client.get("/page/1").text
    r = client.post("/page/1", data={**fields(html), "_action": "save"}, headers={"host": "127.0.0.1:8000"})
    link = re.search(r'id="resume-link" href="([^"]+)"', r.text).group(1)
    assert re.fullmatch(r"https://survey\.example\.org/resume/[A-Za-z0-9_-]{43}", link)
    from typer.testing import CliRunner

    from analysis.cli.main import app as cli

    r = CliRunner().invoke(cli, ["serve", "crs", "--public-url", "survey.example.org"])
    assert r.exit_code == 2 and "give scheme and host only" in r.output
