"""Security of the web survey: CSRF, tokens, tampered codes, body size, escaping, SQL, rate limits."""

from __future__ import annotations

import base64
import random
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from instruments import load_instrument
from instruments.web import SurveyConfig, build_pages, create_app
from tests._web_support import CSRF, fields, page_form, plan_answers, respond

ADMIN = {"authorization": "Basic " + base64.b64encode(b"admin:s3cret-pw").decode()}


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


@pytest.fixture()
def app(tmp_path, crs):
    return create_app(crs, study_dir=tmp_path, admin_password="s3cret-pw")


def _consented(client):
    r = client.get("/")
    client.post("/page/0", data={**fields(r.text), "CONSENT": "1"}, follow_redirects=False)
    return client.get("/page/1").text


def test_csrf_missing_or_forged_is_refused(app):
    client = TestClient(app)
    html = client.get("/").text
    f = fields(html)
    assert client.post("/page/0", data={"_page": f["_page"], "CONSENT": "1"}).status_code == 403
    forged = {**f, "_csrf": "0" * 64, "CONSENT": "1"}
    assert client.post("/page/0", data=forged).status_code == 403
    # a token minted for another session does not work in this one
    other = TestClient(app)
    other_csrf = fields(other.get("/").text)["_csrf"]
    assert client.post("/page/0", data={**f, "_csrf": other_csrf, "CONSENT": "1"}).status_code == 403
    # no cookie at all
    bare = TestClient(app)
    assert bare.post("/page/0", data={**f, "CONSENT": "1"}).status_code == 403
    assert bare.post("/submit", data={"_csrf": f["_csrf"]}).status_code == 403
    assert app.state.storage.drafts_open() == 0
    ok = client.post("/page/0", data={**f, "CONSENT": "1"}, follow_redirects=False)
    assert ok.status_code == 303 and app.state.storage.drafts_open() == 1


def test_tokens_one_response_each(tmp_path, crs):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# personal links\nalpha-7f3k\nbeta-9x2q\n", encoding="utf-8")
    app = create_app(crs, study_dir=tmp_path, tokens=tokens)
    client = TestClient(app)
    assert client.get("/").status_code == 403
    assert "personal link" in client.get("/?token=nope").text
    answers = plan_answers(crs, random.Random(1))
    html = client.get("/?token=alpha-7f3k").text
    assert 'name="_token" value="alpha-7f3k"' in html
    r = client.post("/page/0", data={**fields(html), "_token": "alpha-7f3k", "CONSENT": "1"}, follow_redirects=False)
    assert r.status_code == 303
    pages = build_pages(crs)
    for n in range(1, len(pages)):
        html = client.get(f"/page/{n}").text
        client.post(f"/page/{n}", data={**fields(html), **page_form(pages[n], answers)})
    html = client.get(f"/page/{len(pages)}").text
    r = client.post("/submit", data={"_csrf": CSRF.search(html).group(1)}, follow_redirects=False)
    assert r.status_code == 303 and app.state.storage.count() == 1
    # the used token is refused, on the start page and when a second draft tries to submit
    again = TestClient(app)
    r = again.get("/?token=alpha-7f3k")
    assert r.status_code == 403 and "already been used" in r.text
    assert TestClient(app).get("/?token=beta-9x2q").status_code == 200
    rows = app.state.storage.responses()
    assert rows[0]["token_hash"] is not None and "alpha" not in rows[0]["token_hash"]


def test_used_token_cannot_submit_twice_in_a_race(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, tokens=["tok-1"])
    s = app.state.storage
    common = dict(instrument_id="crs", instrument_version=crs.version, language="en", answers={"CONSENT": 1},
                  timings={}, started_at="2026-01-01T00:00:00.000+00:00", token_hash="h-tok-1")
    s.submit("session-a", **common)
    from instruments.web import TokenUsed
    with pytest.raises(TokenUsed):
        s.submit("session-b", **common)
    assert s.submit("session-a", **common) == s.responses()[0]["response_id"]  # a retry: same ack, no new row
    assert s.count() == 1


def test_out_of_range_codes_are_refused(app):
    client = TestClient(app)
    html = _consented(client)
    r = client.post("/page/1", data={**fields(html), "AGEBAND": "7", "GENDER": "1"})
    assert r.status_code == 422 and "not one of the choices" in r.text
    r = client.post("/page/1", data={**fields(html), "AGEBAND": "1 OR 1=1"})
    assert r.status_code == 422
    r = client.post("/page/1", data={**fields(html), "AGEBAND": ["1", "2"]})
    assert r.status_code == 422
    draft = app.state.storage.draft(__import__("hashlib").sha256(client.cookies["rs_sid"].encode()).hexdigest())
    assert draft["answers"] == {"CONSENT": 1} and draft["page"] == 1


def test_answers_to_skipped_items_are_dropped(app, crs):
    client = TestClient(app)
    html = client.get("/").text
    # declining consent while also sending an answer to a later item
    client.post("/page/0", data={**fields(html), "CONSENT": "0", "AGEBAND": "2"}, follow_redirects=False)
    assert [r["answers"] for r in app.state.storage.responses()] == [{"CONSENT": 0}]  # the refusal, at once
    # and a later page cannot be posted into
    r = client.post("/page/1", data={**fields(html), "AGEBAND": "2"}, follow_redirects=False)
    assert r.status_code == 403  # the form belonged to the session before the draft was made
    page0 = client.get("/").text  # a new respondent on this browser: consent, then the skipped page
    client.post("/page/0", data={**fields(page0), "CONSENT": "1"}, follow_redirects=False)
    page1 = client.get("/page/1").text
    client.post("/page/1", data={**fields(page1), "_action": "save", "AGEBAND": "2"}, follow_redirects=False)
    draft = app.state.storage.draft(__import__("hashlib").sha256(client.cookies["rs_sid"].encode()).hexdigest())
    assert draft["answers"] == {"CONSENT": 1, "AGEBAND": 2}
    assert [r["answers"] for r in app.state.storage.responses()] == [{"CONSENT": 0}]


def test_oversized_body_is_refused(app):
    client = TestClient(app)
    html = _consented(client)
    big = "x" * 70_000
    r = client.post("/page/1", data={**fields(html), "AREA": big})
    assert r.status_code == 413
    r = client.post("/page/1", content=b"a=" + b"b" * 100, headers={"content-length": "999999999",
                                                                     "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    # a long free-text answer within the body limit is still bounded
    r = client.post("/page/1", data={**fields(html), "AREA": "y" * 3000})
    assert r.status_code == 422


def test_script_and_sql_in_free_text_are_neutralised(app, crs):
    client = TestClient(app)
    answers = plan_answers(crs, random.Random(5))
    payload = "<script>alert('x')</script>'); DROP TABLE web_responses;-- \" OR 1=1"
    answers["AREA"] = payload
    rid = respond(client, crs, answers, "en")
    rows = app.state.storage.responses()
    assert len(rows) == 1 and rows[0]["answers"]["AREA"] == payload and rows[0]["response_id"] == rid
    admin = TestClient(app).get("/admin", headers=ADMIN)
    assert admin.status_code == 200
    assert "<script>alert" not in admin.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in admin.text
    csv = TestClient(app).get("/admin/responses.csv", headers=ADMIN)
    assert csv.status_code == 200 and rid in csv.text and csv.headers["content-type"].startswith("text/csv")
    assert app.state.storage.count() == 1


def test_admin_needs_the_password(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, admin_password="s3cret-pw")
    client = TestClient(app)
    assert client.get("/admin").status_code == 401
    bad = {"authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    assert client.get("/admin", headers=bad).status_code == 401
    assert client.get("/admin/responses.csv").status_code == 401
    r = client.get("/admin", headers=ADMIN)
    assert r.status_code == 200 and "0 submitted" in r.text
    closed = create_app(crs, study_dir=tmp_path / "b", admin_password="")
    assert TestClient(closed).get("/admin", headers=ADMIN).status_code == 404


def test_rate_limit_per_session(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, config=SurveyConfig(rate_burst=5, rate_per_second=0.01,
                                                                  client_burst=5, client_per_second=0.01))
    client = TestClient(app)
    # before a draft exists the limit is per client address (a new cookie each time would dodge it)
    codes = [client.get("/").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
    # another respondent is not affected
    other = TestClient(app, client=("192.0.2.7", 50000))
    html = other.get("/").text
    other.post("/page/0", data={**fields(html), "CONSENT": "1"}, follow_redirects=False)
    # with a draft, per session: a new draft has its own 5
    codes = [other.get("/page/1").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]


def test_guessing_tokens_is_slowed_down(tmp_path, crs):
    app = create_app(crs, study_dir=tmp_path, tokens=["real-token-1"])
    codes = [TestClient(app).get(f"/?token=guess{i}").status_code for i in range(35)]
    assert codes[:10] == [403] * 10 and set(codes[10:]) == {429}
    # a visitor from elsewhere with the real link is let in
    assert TestClient(app, client=("192.0.2.8", 1)).get("/?token=real-token-1").status_code == 200


def test_a_token_in_the_link_is_ignored_without_a_token_list(tmp_path, crs):
    # an open survey shared as /?token=newsletter must not turn away the second respondent
    app = create_app(crs, study_dir=tmp_path)
    rids = []
    for _ in range(2):
        client = TestClient(app)
        r = client.get("/?token=newsletter")
        assert "newsletter" not in r.text
        r = client.post("/page/0", data={**fields(r.text), "CONSENT": "0", "_token": "newsletter"},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/done", r.text[-400:]
        rids.append(r.headers["x-response-id"])
    rows = app.state.storage.responses()
    assert len(rows) == 2 and {r["response_id"] for r in rows} == set(rids)


def test_static_files_by_content_address_and_nothing_else(app):
    import hashlib

    from instruments.web.survey import HERE

    client = TestClient(app)
    css = (HERE / "static" / "survey.css").read_bytes()
    html = client.get("/").text
    assert f'href="/static/survey.css?v={hashlib.sha256(css).hexdigest()[:12]}"' in html
    r = client.get("/static/survey.css?v=old")
    assert r.status_code == 200 and r.content == css and r.headers["x-content-type-options"] == "nosniff"
    for path in ("/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e%2fstorage.py", "/static/app.py",
                 "/static/survey.css%00", "/static/"):
        assert client.get(path).status_code == 404, path
