"""Attacks on the web survey (issue 12, items 6, 7 and 12), each reproduced, then shown to fail.

Sessions: a planted session id is never adopted; wrong personal tokens share one
limit whatever the route; a resume link is its own single-use secret, never the
session id, and using it closes the old session; resume links die at submission
and need the CSRF token; drafts expire; new drafts are capped; the admin lockout hits wrong
passwords only; ``__Host-`` cookies over HTTPS. Storage: a read-only store
stops ``serve`` at start-up, ``/healthz`` writes, a broken or full store gives
a 503 page in the respondent's language. Input: raw invalid UTF-8 is refused,
bidi overrides never reach an admin, HEAD works.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import random
import re
import sqlite3
import subprocess
import sys
import warnings
from urllib.parse import quote

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from instruments import load_instrument
from instruments.web import Storage, SurveyConfig, build_pages, create_app
from tests._web_support import CSRF, ROOT, fields, free_port, page_form, plan_answers, respond

ADMIN = {"authorization": "Basic " + base64.b64encode(b"admin:s3cret-pw").decode()}
WRONG = {"authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


def days_ago(days: float) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return t.isoformat(timespec="milliseconds")


def _planted(app, sid: str, **kw) -> TestClient:
    """A browser holding a session cookie someone else chose (as a site on a sibling domain can set)."""
    client = TestClient(app, **kw)
    client.cookies.set("rs_sid", sid, domain="testserver.local", path="/")
    return client


def _sid_hash(client, name="rs_sid"):
    return hashlib.sha256(client.cookies[name].encode()).hexdigest()


def _saved_link(client) -> str:
    """Consent, a half-answered page 1 saved: the resume link's path."""
    html = client.get("/").text
    client.post("/page/0", data={**fields(html), "CONSENT": "1"})
    html = client.get("/page/1").text
    r = client.post("/page/1", data={**fields(html), "_action": "save", "AGEBAND": "3"})
    return re.search(r'id="resume-link" href="http://testserver([^"]+)"', r.text).group(1)


# --- item 6: sessions -------------------------------------------------------------

def test_a_planted_session_id_is_never_adopted(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    attacker = TestClient(app, client=("198.51.100.9", 4000))
    planted = "attacker-chosen-session-id-0123456789abcdefghij"
    victim = _planted(app, planted)
    html = victim.get("/").text
    assert victim.cookies["rs_sid"] != planted  # the server minted its own
    victim.post("/page/0", data={**fields(html), "CONSENT": "1"})
    html = victim.get("/page/1").text
    victim.post("/page/1", data={**fields(html), "AGEBAND": "4", "_action": "save"})
    # the attacker tries to take the answers over with the id they planted
    page = attacker.get(f"/resume/{planted}")
    assert page.status_code == 404
    assert attacker.post(f"/resume/{planted}", follow_redirects=False).status_code in (403, 404)
    stolen = _planted(app, planted)
    assert stolen.get("/page/1", follow_redirects=False).headers["location"].startswith("/?")

    # variant: the attacker first obtains a valid id and CSRF token, plants both (a form that posts
    # the consent page with the victim's cookie jar holding the attacker's id); the draft is still
    # born under a new id that the attacker never sees
    html = attacker.get("/").text
    known = attacker.cookies["rs_sid"]
    victim2 = _planted(app, known)
    r = victim2.post("/page/0", data={**fields(html), "CONSENT": "1"}, follow_redirects=False)
    assert r.status_code == 303 and victim2.cookies["rs_sid"] != known
    assert app.state.storage.draft(hashlib.sha256(known.encode()).hexdigest()) is None
    assert app.state.storage.draft(_sid_hash(victim2)) is not None


def test_wrong_tokens_share_one_limit_whatever_the_route(tmp_path, crs):
    own, others = "alpha-7f3k", ["beta-9x2q", "gamma-4c8m"]
    app = create_app(crs, study_dir=tmp_path, tokens=[own, *others])
    attacker = TestClient(app)
    f = fields(attacker.get(f"/?token={own}").text)  # an invited respondent, with a form and its CSRF token
    codes, admitted = [], []
    for i in range(60):
        guess = {30: others[0], 45: others[1], 58: others[1]}.get(i, f"guess-{i}")
        if i % 2:
            r = attacker.get(f"/?token={guess}", follow_redirects=False)
        else:  # the consent page posted with _token: the route that had no limit
            r = attacker.post("/page/0", data={**f, "_token": guess, "CONSENT": "1"}, follow_redirects=False)
        codes.append(r.status_code)
        if guess in others and r.status_code in (200, 303):
            admitted.append(guess)
    assert admitted == []  # once limited, a right guess looks exactly like a wrong one
    assert codes[:10] == [403] * 10 and codes.count(429) == 50


def test_token_guessing_through_the_consent_page_is_limited(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, tokens=["real-token-1"])
    client = TestClient(app)
    html = client.get("/?token=real-token-1").text
    f = fields(html)
    codes = [client.post("/page/0", data={**f, "_token": f"guess{i}", "CONSENT": "1"},
                         follow_redirects=False).status_code for i in range(30)]
    assert codes[:10] == [403] * 10 and set(codes[10:]) == {429}
    r = client.post("/page/0", data={**f, "_token": "real-token-1", "CONSENT": "1"}, follow_redirects=False)
    assert r.status_code == 429 and app.state.storage.drafts_open() == 0


def test_resume_link_dies_at_submission(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    link = _saved_link(client)
    # the respondent goes on in the same browser and submits
    answers = plan_answers(crs, random.Random(2))
    pages = build_pages(crs)
    where = "/page/1"
    while int(where.split("/")[2].split("?")[0]) < len(pages):
        n = int(where.split("/")[2].split("?")[0])
        html = client.get(where).text
        r = client.post(f"/page/{n}", data={**fields(html), **page_form(pages[n], answers)}, follow_redirects=False)
        where = r.headers["location"]
    html = client.get(where).text
    r = client.post("/submit", data={"_csrf": CSRF.search(html).group(1)}, follow_redirects=False)
    code = r.headers["x-response-id"]
    # whoever holds the old link: no page, no reference code
    other = TestClient(app, client=("192.0.2.1", 1))
    page = other.get(link)
    assert page.status_code == 404 and code not in page.text
    r = other.post(link, follow_redirects=False)
    assert r.status_code == 404 and code not in r.text and "location" not in r.headers


def test_resume_needs_the_csrf_token(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    link = _saved_link(TestClient(app))
    before = app.state.storage.drafts_open()
    # a form on another site posting the link (login CSRF): refused, the link still works
    forged = TestClient(app, client=("192.0.2.2", 1))
    assert forged.post(link, follow_redirects=False).status_code == 403
    assert forged.post(link, data={"_csrf": "0" * 64}, follow_redirects=False).status_code == 403
    owner = TestClient(app, client=("192.0.2.3", 1))
    page = owner.get(link).text
    token = CSRF.search(page).group(1)
    cross = owner.post(link, data={"_csrf": token}, headers={"sec-fetch-site": "cross-site"}, follow_redirects=False)
    assert cross.status_code == 403
    r = owner.post(link, data={"_csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/page/1?lang=en"
    assert app.state.storage.drafts_open() == before


def _recording(client: TestClient, seen: list | None = None) -> list:
    """Every response the client gets (body read) into ``seen``, to look for secrets in pages and addresses."""
    seen = [] if seen is None else seen

    def keep(response):
        response.read()
        seen.append(response)
    client.event_hooks = {"request": [], "response": [keep]}
    return seen


def test_a_resume_link_is_not_a_session_id(tmp_path, crs, caplog):
    """QA's attack: the link's token was the live session id, so setting it as the cookie read and
    changed the draft without pressing the button, without using the link up, while the victim
    went on in the same session."""
    caplog.set_level("DEBUG")
    app = create_app(crs, study_dir=tmp_path)
    victim = TestClient(app)
    seen = _recording(victim)
    link = _saved_link(victim)
    token, sid = link.rsplit("/", 1)[1], victim.cookies["rs_sid"]
    assert token != sid
    # the attacker holds the link and uses its token as a cookie: no draft, no answers, no form
    attacker = _planted(app, token)
    r = attacker.get("/page/1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/?")
    assert 'value="3" checked' not in attacker.get("/page/1").text
    # the victim goes on meanwhile; the link was not used up by any of that
    victim_page = victim.get("/page/1")
    assert victim_page.status_code == 200
    owner = TestClient(app, client=("192.0.2.5", 1))
    _recording(owner, seen)
    page = owner.get(link)
    r = owner.post(link, data={"_csrf": CSRF.search(page.text).group(1)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/page/1?lang=en"
    fresh = owner.cookies["rs_sid"]
    assert fresh not in (token, sid)
    html = owner.get("/page/1").text
    assert 'id="AGEBAND-3" name="AGEBAND" value="3" checked' in html
    # the redeemer alone writes: the victim's old session is closed, its form goes nowhere
    stale = victim.post("/page/1", data={**fields(victim_page.text), "AGEBAND": "1", "_action": "save"},
                        follow_redirects=False)
    assert stale.status_code in (303, 403) and not stale.headers.get("location", "").startswith("/page/")
    assert victim.get("/page/1", follow_redirects=False).headers["location"].startswith("/?")
    r = owner.post("/page/1", data={**fields(html), "AGEBAND": "5", "_action": "save"}, follow_redirects=False)
    assert r.status_code == 303
    draft = app.state.storage.draft(hashlib.sha256(fresh.encode()).hexdigest())
    assert draft["answers"]["AGEBAND"] == 5
    assert app.state.storage.draft(hashlib.sha256(sid.encode()).hexdigest()) is None
    # single use: the link (or its token as a cookie) is dead now
    assert TestClient(app, client=("192.0.2.6", 1)).post(link, follow_redirects=False).status_code in (403, 404)
    assert _planted(app, token).get("/page/1", follow_redirects=False).status_code == 303
    # no session id in any page, address or log line; the database keeps hashes only
    assert len(seen) >= 10 and any(link in resp.text for resp in seen)  # the recording works
    for cookie in (sid, fresh):
        for resp in seen:
            assert cookie not in resp.text and cookie not in resp.headers.get("location", "")
            assert cookie not in str(resp.request.url)
        assert cookie not in caplog.text
    dump = "\n".join(sqlite3.connect(tmp_path / "web" / "responses.sqlite").iterdump())
    assert token not in dump and sid not in dump and fresh not in dump


def test_saving_again_replaces_the_resume_link(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    first = _saved_link(client)
    html = client.get("/page/1").text
    r = client.post("/page/1", data={**fields(html), "_action": "save", "AGEBAND": "2"})
    second = re.search(r'id="resume-link" href="http://testserver([^"]+)"', r.text).group(1)
    assert second != first
    other = TestClient(app, client=("192.0.2.7", 1))
    assert other.get(first).status_code == 404  # one live link per draft: the newest
    page = other.get(second)
    assert page.status_code == 200
    r = other.post(second, data={"_csrf": CSRF.search(page.text).group(1)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/page/1?lang=en"


def test_guessing_resume_links_shares_the_wrong_token_limit(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, tokens=["real-token-1"])
    client = TestClient(app)
    html = client.get("/?token=real-token-1").text
    client.post("/page/0", data={**fields(html), "_token": "real-token-1", "CONSENT": "1"})
    html = client.get("/page/1").text
    r = client.post("/page/1", data={**fields(html), "_action": "save", "AGEBAND": "3"})
    link = re.search(r'id="resume-link" href="http://testserver([^"]+)"', r.text).group(1)
    guesser = TestClient(app, client=("198.51.100.30", 1))
    codes = [guesser.get(f"/resume/guess{i:040d}").status_code for i in range(6)]
    codes += [guesser.get(f"/?token=guess{i}").status_code for i in range(4)]
    assert codes == [404] * 6 + [403] * 4
    assert guesser.get(link).status_code == 429  # a right link, once limited, looks like a wrong one
    assert guesser.get("/?token=guess-x").status_code == 429
    assert TestClient(app, client=("198.51.100.31", 1)).get(link).status_code == 200


def test_a_store_from_before_resume_tokens_is_upgraded(tmp_path, crs):
    """An older store (links were session ids): the column is added, the drafts stay with their
    cookies, and an old link, being a session id, opens nothing."""
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app)
    _saved_link(client)
    sid = client.cookies["rs_sid"]
    app.state.storage.dispose()
    db = tmp_path / "web" / "responses.sqlite"
    con = sqlite3.connect(db)
    con.execute("DROP INDEX ix_web_drafts_resume_hash")
    con.execute("ALTER TABLE web_drafts DROP COLUMN resume_hash")
    con.commit()
    con.close()
    app = create_app(crs, study_dir=tmp_path)
    columns = [row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(web_drafts)")]
    assert "resume_hash" in columns
    client = TestClient(app)
    client.cookies.set("rs_sid", sid, domain="testserver.local", path="/")
    assert 'value="3" checked' in client.get("/page/1").text
    assert TestClient(app, client=("192.0.2.8", 1)).get(f"/resume/{sid}").status_code == 404
    assert re.search(r'id="resume-link" href="http://testserver/resume/', client.get("/page/1?saved=1").text)
    create_app(crs, study_dir=tmp_path)  # upgrading twice is harmless


def test_drafts_expire_and_are_purged(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, config=SurveyConfig(draft_days=30))
    client = TestClient(app)
    link = _saved_link(client)
    fresh = TestClient(app, client=("192.0.2.4", 1))
    _saved_link(fresh)
    db = tmp_path / "web" / "responses.sqlite"
    con = sqlite3.connect(db)
    con.execute("UPDATE web_drafts SET updated_at = ? WHERE session_hash = ?", (days_ago(31), _sid_hash(client)))
    con.commit()
    con.close()
    # expired: gone for the respondent and the link at once
    assert client.get("/page/1", follow_redirects=False).headers["location"].startswith("/?")
    assert TestClient(app).get(link).status_code == 404
    assert fresh.get("/page/1").status_code == 200  # a draft saved today is kept
    # and purged from the database (at start-up and hourly after)
    create_app(crs, study_dir=tmp_path)
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM web_drafts").fetchone()[0]
    assert rows == 1
    assert Storage(path=db).purge_drafts(days_ago(-1)) == 1  # everything older than tomorrow


def test_new_drafts_are_capped_per_client_and_overall(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, config=SurveyConfig(drafts_per_client_per_hour=3, drafts_per_hour=5))

    def start(client):
        client.cookies.clear()
        html = client.get("/").text
        return client.post("/page/0", data={**fields(html), "CONSENT": "1"}, follow_redirects=False).status_code

    a = TestClient(app, client=("192.0.2.10", 1))
    assert [start(a) for _ in range(4)] == [303, 303, 303, 429]
    b = TestClient(app, client=("192.0.2.11", 1))
    assert [start(b) for _ in range(3)] == [303, 303, 429]  # five in all
    assert app.state.storage.drafts_open() == 5


def test_admin_lockout_is_for_wrong_passwords_only(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, admin_password="s3cret-pw")
    attacker = TestClient(app, client=("203.0.113.5", 1))
    codes = [attacker.get("/admin", headers=WRONG).status_code for _ in range(15)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    locked = attacker.get("/admin", headers=WRONG)
    assert "www-authenticate" in locked.headers and locked.headers["retry-after"]
    # a request without credentials is not a guess: asked for the password, from anywhere
    for client in (attacker, TestClient(app)):
        r = client.get("/admin")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    # the right password is never locked out, from anywhere: nobody can lock the admins out
    assert TestClient(app, client=("198.51.100.20", 1)).get("/admin", headers=ADMIN).status_code == 200
    assert attacker.get("/admin", headers=ADMIN).status_code == 200
    assert attacker.get("/admin", headers=WRONG).status_code == 429


def test_host_prefixed_secure_cookie_over_https(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client = TestClient(app, base_url="https://testserver")
    r = client.get("/")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-rs_sid=") and "Secure" in cookie and "Path=/" in cookie
    assert "domain" not in cookie.lower()
    r = client.post("/page/0", data={**fields(r.text), "CONSENT": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["set-cookie"].startswith("__Host-rs_sid=")
    assert client.get("/page/1").status_code == 200
    # a plain rs_sid cookie planted over HTTPS is not read at all
    planted = TestClient(app, base_url="https://testserver")
    planted.cookies.set("rs_sid", client.cookies["__Host-rs_sid"], domain="testserver.local", path="/")
    assert planted.get("/page/1", follow_redirects=False).status_code == 303


# --- item 7: a read-only or broken store -------------------------------------------

def _read_only_url(tmp_path) -> str:
    path = tmp_path / "web" / "responses.sqlite"
    storage = Storage(path=path)
    storage.secret()  # tables and signing secret made while writable
    storage.dispose()
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_serve_refuses_a_read_only_store_at_start(tmp_path):
    url = _read_only_url(tmp_path)
    cmd = [sys.executable, "-m", "analysis.cli.main", "serve", "crs", "--database-url", url,
           "--port", str(free_port())]
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("serve started on a read-only store instead of refusing")
    assert run.returncode == 1, run.stderr
    assert "cannot write to the response store" in run.stderr and "readonly" in run.stderr.replace("-", "")
    assert "serving" not in run.stderr and "Traceback" not in run.stderr


def test_healthz_tests_that_answers_can_be_stored(tmp_path, crs):
    good = TestClient(create_app(crs, study_dir=tmp_path / "ok"))
    assert good.get("/healthz").status_code == 200
    broken = TestClient(create_app(crs, database_url=_read_only_url(tmp_path)))
    r = broken.get("/healthz")
    assert r.status_code == 503 and "not writable" in r.text


def test_storage_failure_gives_a_503_page_in_the_survey_language(tmp_path, crs):
    app = create_app(crs, database_url=_read_only_url(tmp_path))
    client = TestClient(app, raise_server_exceptions=False)
    html = client.get("/?lang=ur").text
    r = client.post("/page/0", data={**fields(html), "CONSENT": "1", "_lang": "ur"}, follow_redirects=False)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert '<html lang="ur" dir="rtl">' in r.text and "سروے اس وقت جوابات محفوظ نہیں کر سکتا" in r.text
    assert "Internal Server Error" not in r.text and "Traceback" not in r.text


# --- item 12: bytes, bidi, HEAD, a full disk -----------------------------------------

def _on_page_one(app):
    client = TestClient(app)
    html = client.get("/").text
    client.post("/page/0", data={**fields(html), "CONSENT": "1"})
    return client, client.get("/page/1").text


def test_invalid_utf8_from_a_form_is_refused_not_stored_as_mojibake(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path)
    client, html = _on_page_one(app)
    f = fields(html)
    base = f"_csrf={f['_csrf']}&_page={f['_page']}&_action=save&AGEBAND=2".encode()
    form = {"content-type": "application/x-www-form-urlencoded"}
    for bad in (b"&AREA=%FF%FEcaf%E9", b"&AREA=caf\xe9", b"&AREA=\xff\xfe"):
        r = client.post("/page/1", content=base + bad, headers=form, follow_redirects=False)
        assert r.status_code == 400 and "could not be read" in r.text, bad
    draft = app.state.storage.draft(_sid_hash(client))
    assert draft["answers"] == {"CONSENT": 1}
    # proper UTF-8 (percent-encoded, as browsers send it) is kept exactly
    ok = base + b"&AREA=" + quote("شمالی محلہ café").encode("ascii")
    r = client.post("/page/1", content=ok, headers=form, follow_redirects=False)
    assert r.status_code == 303
    assert app.state.storage.draft(_sid_hash(client))["answers"]["AREA"] == "شمالی محلہ café"


def test_bidi_overrides_never_reach_an_admin(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, admin_password="s3cret-pw")
    answers = plan_answers(crs, random.Random(4))
    # "Trojan Source": U+202E shows "txt.exe" as "exe.txt"; U+2066..2069 isolate and reorder
    answers["AREA"] = "invoice\u202etxt.exe \u2066hidden\u2069 و\u200cری"
    respond(TestClient(app), crs, answers, "en")
    stored = app.state.storage.responses()[0]["answers"]["AREA"]
    assert stored == "invoicetxt.exe hidden و\u200cری"  # the joiner Urdu needs is kept
    # a value stored before this check (or written by another tool) is shown, not obeyed
    old = plan_answers(crs, random.Random(5))
    old["AREA"] = "abc\u202edef"
    app.state.storage.submit("legacy-session", instrument_id="crs", instrument_version=crs.version, language="en",
                             answers=old, timings={}, started_at=days_ago(1), token_hash=None)
    page = TestClient(app).get("/admin", headers=ADMIN).text
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", page)
    assert "abc[U+202E]def" in page and "<bdi>" in page


def test_head_is_answered_like_get_without_a_body(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    for path in ("/", "/healthz", "/relevance.js", "/withdraw"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-security-policy"]


def test_unknown_addresses_and_methods_give_pages_in_the_survey_language(tmp_path, crs):
    client = TestClient(create_app(crs, study_dir=tmp_path))
    for method, path, status in (("GET", "/nope?lang=ur", 404), ("GET", "/page/abc?lang=ur", 404),
                                 ("DELETE", "/?lang=ur", 405), ("PUT", "/submit?lang=ur", 405)):
        r = client.request(method, path)
        assert r.status_code == status, path
        assert r.headers["content-type"].startswith("text/html") and "ایسا کوئی صفحہ نہیں ہے" in r.text
        assert '"detail"' not in r.text
    assert "GET" in client.request("DELETE", "/").headers["allow"]


def test_a_full_disk_shows_a_clear_page(tmp_path, crs, caplog):
    from sqlalchemy import event

    app = create_app(crs, study_dir=tmp_path)
    client, html = _on_page_one(app)
    storage = app.state.storage
    pages = sqlite3.connect(tmp_path / "web" / "responses.sqlite").execute("PRAGMA page_count").fetchone()[0]

    @event.listens_for(storage.engine, "connect")
    def _disk_full(dbapi_con, _record):  # SQLite's own "database or disk is full" (SQLITE_FULL)
        dbapi_con.execute(f"PRAGMA max_page_count = {pages}")

    storage.engine.dispose()
    # respondents keep saving long answers until the pages the database may use are used up
    statuses = []
    for i in range(200):
        r = client.post("/page/1", data={**fields(html), "AREA": f"{i} " + "x" * 1900, "AGEBAND": "1",
                                         "_action": "save"}, follow_redirects=False)
        statuses.append(r.status_code)
        if r.status_code != 303:
            break
        client, html = _on_page_one(app)
    assert statuses[-1] == 503 and set(statuses[:-1]) <= {303}
    assert "cannot store answers at the moment" in r.text and "Internal Server Error" not in r.text
    assert "database or disk is full" in caplog.text  # SQLite's own error, logged for the operator
    assert TestClient(app).get("/healthz").status_code in (200, 503)  # a small write may still fit
