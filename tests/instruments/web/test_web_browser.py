"""End to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A respondent opens the survey, switches to Urdu, consents, answers, watches an
item disappear by relevance, saves, comes back later through the resume link in
a fresh browser, and submits. The stored response is exported, imported into a
study store and scored: the scores equal those of instruments.score for the
same answers.

The crs instrument's only skips depend on consent, so the test serves a copy
whose REPR3 ("seen officers or associations at events") is asked only when
REPR2 ("heard of a staff association") is Yes: a skip on the same page, which
the browser applies as it happens and the server checks again.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from instruments import load_instrument
from instruments.score import score
from instruments.store import Study
from instruments.web import Storage, build_pages, write_responses_csv
from instruments.web import create_app
from tests._web_support import ThreadServer, plan_answers

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless browser test needs Debian's chromium at /usr/bin/chromium "
                                       "(apt-get install chromium)")


def _crs_with_skip(tmp_path: Path) -> Path:
    text = (Path(__file__).resolve().parents[3] / "instruments/library/crs.yaml").read_text(encoding="utf-8")
    head, tail = text.split("- id: REPR3", 1)
    tail = tail.replace("relevant: CONSENT == 1", "relevant: CONSENT == 1 and REPR2 == 1", 1)
    path = tmp_path / "crs_skip.yaml"
    path.write_text(head + "- id: REPR3" + tail, encoding="utf-8")
    return path


def _answer(page, pdef, answers):
    for it in pdef.items:
        if it.id not in answers:
            continue
        value = answers[it.id]
        if isinstance(value, str):
            page.fill(f"#{it.id}", value)
        else:
            page.check(f"#{it.id}-{value}")


def test_respondent_in_urdu_skips_resumes_and_submits(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path = _crs_with_skip(tmp_path)
    inst = load_instrument(path)
    pages = build_pages(inst)
    answers = plan_answers(inst, random.Random(2024))
    answers["REPR2"] = 0  # heard of no staff association: REPR3 is skipped
    answers.pop("REPR3", None)
    answers["AREA"] = "<b>شمالی</b> محلہ"
    server = ThreadServer(create_app(inst, study_dir=tmp_path)).start()
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            ctx = browser.new_context()
            page = ctx.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + "/")
            assert page.locator("html").get_attribute("lang") == "en"
            page.click("button[lang=ur]")  # a button of the form: answers on the page are kept
            assert page.locator("html").get_attribute("dir") == "rtl"
            assert inst.consent.text["ur"][:20] in page.content()
            page.check("#CONSENT-1")
            page.click("#next")
            # pages 1..4 now; then save and leave
            for n in range(1, 5):
                page.wait_for_url(re.compile(rf"/page/{n}\b"))
                assert page.locator("#progress").inner_text().strip().startswith(f"صفحہ {n + 1} از")
                _answer(page, pages[n], answers)
                page.click("#next")
            page.wait_for_url(re.compile(r"/page/5\b"))
            _answer(page, pages[5], answers)
            page.click("#save")
            link = page.locator("#resume-link").get_attribute("href")
            assert re.fullmatch(re.escape(server.url) + r"/resume/[A-Za-z0-9_-]{43}", link)
            ctx.close()

            later = browser.new_context()  # another day, a browser without the cookie
            page = later.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(link)
            page.click("#continue")  # a button, so link previews cannot use the link up
            page.wait_for_url(re.compile(r"/page/5\b"))
            assert page.locator("html").get_attribute("lang") == "ur"
            assert page.is_checked(f"#{pages[5].items[0].id}-{answers[pages[5].items[0].id]}")
            page.click("#next")
            for n in range(6, len(pages)):
                page.wait_for_url(re.compile(rf"/page/{n}\b"))
                if pages[n].key == "S_REPR":
                    assert page.is_hidden("#q-REPR3")  # REPR2 not answered yet
                    page.check("#REPR2-1")
                    assert page.is_visible("#q-REPR3")
                    _answer(page, pages[n], answers)  # REPR2 = No
                    assert page.is_hidden("#q-REPR3") and page.is_disabled("#REPR3-1")
                else:
                    _answer(page, pages[n], answers)
                page.click("#next")
            page.wait_for_url(re.compile(rf"/page/{len(pages)}\b"))
            page.click("#submit")
            page.wait_for_url(re.compile(r"/done$"))
            code = page.locator("#reference-code").inner_text().strip()
            browser.close()
    finally:
        server.stop()
    assert problems == []  # no script errors, no CSP violations

    storage = Storage(path=tmp_path / "web" / "responses.sqlite")
    rows = storage.responses()
    assert len(rows) == 1 and rows[0]["response_id"] == code
    assert rows[0]["language"] == "ur" and "REPR3" not in rows[0]["answers"]
    assert rows[0]["answers"] == answers
    csv = write_responses_csv(storage, inst, tmp_path / "web.csv")
    study = Study(tmp_path / "study")
    result = study.import_file(csv, inst)
    assert result.added and result.report.n_errors == 0
    stored = study.responses()
    got = score(stored, inst).table.iloc[0]
    want = score(pd.DataFrame([answers]), inst).table.iloc[0]
    for c in inst.construct_ids:
        assert (np.isnan(got[c]) and np.isnan(want[c])) or got[c] == want[c], c
    assert stored["AREA"].iloc[0] == answers["AREA"]


def test_works_without_javascript(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    inst = load_instrument("crs")
    pages = build_pages(inst)
    answers = plan_answers(inst, random.Random(5))
    server = ThreadServer(create_app(inst, study_dir=tmp_path)).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            page = browser.new_context(java_script_enabled=False).new_page()
            page.goto(server.url + "/")
            page.check("#CONSENT-1")
            page.click("#next")
            page.wait_for_url(re.compile(r"/page/1\b"))
            page.click("#next")  # nothing answered: the browser's own required check stops the post
            assert re.search(r"/page/1\b", page.url)
            _answer(page, pages[1], answers)
            page.click("#next")
            page.wait_for_url(re.compile(r"/page/2\b"))
            page.click("#save")
            assert page.locator("#resume-link").count() == 1
            browser.close()
    finally:
        server.stop()
    s = Storage(path=tmp_path / "web" / "responses.sqlite")
    assert s.drafts_open() == 1
    (stored,) = sqlite3.connect(tmp_path / "web" / "responses.sqlite").execute("SELECT answers FROM web_drafts").fetchone()
    want = {"CONSENT": 1, **{it.id: answers[it.id] for it in pages[1].items if it.id in answers}}
    assert json.loads(stored) == want


def test_declining_then_withdrawing_in_urdu(tmp_path):
    """A refusal ends on the thank-you page at once; its reference code is then withdrawn on /withdraw."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    inst = load_instrument("crs")
    server = ThreadServer(create_app(inst, study_dir=tmp_path)).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            page = browser.new_context().new_page()
            page.goto(server.url + "/?lang=ur")
            page.check("#CONSENT-0")
            page.click("#next")
            page.wait_for_url(re.compile(r"/done$"))
            assert "آپ نے حصہ نہ لینے کا انتخاب کیا" in page.content()
            code = page.locator("#reference-code").inner_text()
            s = Storage(path=tmp_path / "web" / "responses.sqlite")
            assert [r["answers"] for r in s.responses()] == [{"CONSENT": 0}]  # recorded before the page showed
            page.click("#withdraw-link")
            page.wait_for_url(re.compile(r"/withdraw\?lang=ur$"))
            assert page.locator("html").get_attribute("dir") == "rtl"
            page.fill("#code", code)
            page.click("#withdraw")
            assert "آپ کے جوابات حذف کر دیے گئے ہیں" in page.content()
            browser.close()
    finally:
        server.stop()
    assert s.count() == 0 and list(s.withdrawals()["response_id"]) == [code]
