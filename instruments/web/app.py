"""The instrument as a self-hosted web survey (FastAPI, served by uvicorn).

``create_app(instrument)`` returns an ASGI app. Respondents see the consent
page first, then one section per page, in any declared language. Everything
works without JavaScript; with it, relevance conditions hide and show items as
they are answered (the conditions are rendered to JavaScript by
:func:`instruments.relevance.to_javascript` into one static script, so the page
needs no inline script). The server applies the same rules again whatever the
browser sent (:mod:`instruments.web.pages`).

Sessions: the server mints every session id itself (a cookie from the browser
is never adopted unless a draft is stored under it) and gives a draft a new id
when it is created. The id lives only in the cookie: never in an address, a
page or a log line. A resume link (``/resume/<token>``) carries a separate
random secret bound to one draft: it works once, only the newest one works,
and it dies with the draft or at submission. Using it moves the draft to a new
session id, so the link and the draft's old cookie both stop working. The
database keeps only sha256 hashes of ids and tokens. Each form carries a CSRF
token, an HMAC of the session id under a secret kept in the database.

The routes come in groups, each registered by one function below:
respondent pages (``/``, ``/page/N``, ``/done``), answers (posting a page,
``/submit``), resume links,
withdrawal, the admin area, and service routes (scripts, health).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError

from instruments.interface import LANGUAGE_NAMES, RTL, interface_text
from instruments.relevance import to_javascript
from instruments.web.guard import BadForm, Guard, RateLimiter, parse_form
from instruments.web.pages import (MAX_TEXT, Page, build_pages, check_page, declined_consent, final_answers, may_be_relevant,
                    page_is_relevant, referenced_items, evaluate)
from instruments.web.storage import Storage, StorageError, TokenUsed, days_ago, sha256_hex, utc_now

__all__ = ["create_app", "SurveyConfig", "Page", "build_pages", "check_page"]

HERE = Path(__file__).parent
COOKIE = "rs_sid"
SECURE_COOKIE = "__Host-rs_sid"  # over HTTPS: no Domain, Path=/, Secure, so no subdomain can plant it
MAX_BODY = 64 * 1024
log = logging.getLogger(__name__)


@dataclass
class SurveyConfig:
    rate_burst: int = 60          # requests a session with a draft may make at once
    rate_per_second: float = 5.0  # and then per second
    client_burst: int = 600       # requests one address may make before it has a draft (a shared wifi:
    client_per_second: float = 50.0  # many respondents starting at once behind one address)
    max_body: int = 64 * 1024
    secure_cookies: bool = False  # set True behind HTTPS (also automatic when the request is HTTPS)
    grid_min: int = 2             # consecutive items sharing a scale shown as a grid
    public_url: str | None = None  # e.g. https://survey.example.org, for resume links behind a proxy
    draft_days: float = 30.0      # a draft not saved for this long is gone (and purged)
    drafts_per_client_per_hour: int = 120  # new drafts from one address (a community centre's wifi: raise it)
    drafts_per_hour: int = 10_000  # new drafts from everyone together
    wrong_tokens_per_client: int = 10  # wrong personal tokens or codes before one address waits
    wrong_tokens_per_hour: int = 3600  # and from everyone together (burst 100)


def _sign(secret: bytes, *parts: Any) -> str:
    msg = "|".join(str(p) for p in parts).encode("utf-8")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _read_tokens(tokens) -> set[str] | None:
    if tokens is None:
        return None
    if isinstance(tokens, (str, Path)):
        lines = Path(tokens).read_text(encoding="utf-8").splitlines()
        return {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
    return {str(t).strip() for t in tokens if str(t).strip()}


def _relevance_script(pages: list[Page]) -> str:
    lines = ["// relevance conditions of the instrument, rendered by instruments.relevance.to_javascript",
             "window.SurveyRelevance = {"]
    for page in pages:
        for it in page.items:
            if it.relevant:
                lines.append(f"  {json.dumps(it.id)}: function (answers) {{ return {to_javascript(it.relevant)}; }},")
    lines.append("};")
    return "\n".join(lines) + "\n"


def _iso_ago(seconds: float) -> str:
    return days_ago(seconds / 86400)


class _Survey:
    """What every route shares: the instrument and its pages, the store, signing, limits, templates."""

    def __init__(self, inst, storage: Storage, cfg: SurveyConfig, token_set: set[str] | None,
                 admin_password: str | None):
        self.inst, self.storage, self.cfg = inst, storage, cfg
        self.token_set, self.admin_password = token_set, admin_password
        self.secret = storage.secret()
        self.pages = build_pages(inst)
        self.page_of = {it.id: n for n, p in enumerate(self.pages) for it in p.items}
        self.limiter = RateLimiter(cfg.rate_burst, cfg.rate_per_second)
        self.visitors = RateLimiter(cfg.client_burst, cfg.client_per_second)
        self.admin_failures = RateLimiter(10, 0.2)  # wrong passwords per address
        self.wrong_per_client = RateLimiter(cfg.wrong_tokens_per_client, cfg.wrong_tokens_per_client / 600)
        self.wrong_overall = RateLimiter(100, cfg.wrong_tokens_per_hour / 3600)
        self.drafts_per_client = RateLimiter(cfg.drafts_per_client_per_hour, cfg.drafts_per_client_per_hour / 3600)
        self.drafts_overall = RateLimiter(cfg.drafts_per_hour, cfg.drafts_per_hour / 3600)
        self.last_purge = time.monotonic()  # create_app purges once at start
        self.relevance_js = _relevance_script(self.pages)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["visible_controls"] = _visible_controls
        self.static = {name: (HERE / "static" / name).read_bytes() for name in ("survey.css", "survey.js")}
        # cached for an hour, so the address changes with the content (an upgrade reaches everyone at once)
        self.asset = {name: f"/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}"
                      for name, body in self.static.items()}

    # --- language and pages ---------------------------------------------------
    def lang_of(self, request: Request, draft: dict | None = None, form: dict | None = None) -> str:
        for cand in ((form or {}).get("_lang", [None])[0], request.query_params.get("lang"),
                     draft["language"] if draft else None):
            if cand in self.inst.languages:
                request.state.lang = cand
                return cand
        request.state.lang = self.inst.default_language
        return self.inst.default_language

    def t(self, lang: str, key: str, **kw) -> str:
        return interface_text(self.inst, lang, key, **kw)

    def render(self, request: Request, name: str, lang: str, status: int = 200, sid: str | None = None,
               headers: dict | None = None, **ctx) -> HTMLResponse:
        inst = self.inst
        html = self.env.get_template(name).render(
            lang=lang, dir="rtl" if lang.split("-")[0] in RTL else "ltr", t=lambda k, **kw: self.t(lang, k, **kw),
            inst=inst, survey_title=self.t(lang, "title"), asset=self.asset,
            languages=[(code, LANGUAGE_NAMES.get(code, code)) for code in inst.languages],
            csrf=self.csrf_for(sid) if sid else "", **ctx)
        resp = HTMLResponse(html, status_code=status, headers=headers)
        if sid:
            self.set_session(request, resp, sid)
        return resp

    def message(self, request: Request, lang: str, status: int, title: str, body: str,
                headers: dict | None = None) -> HTMLResponse:
        """A page with a title and a sentence, both interface keys (in the respondent's language)."""
        return self.render(request, "message.html", lang, status=status, title=self.t(lang, title),
                           body=self.t(lang, body), headers=headers)

    def forbidden(self, request: Request, lang: str, why: str) -> HTMLResponse:
        return self.message(request, lang, 403, "forbidden_title", why)

    def too_many(self, request: Request, lang: str) -> HTMLResponse:
        return self.message(request, lang, 429, "busy_title", "busy", headers={"retry-after": "10"})

    def page_context(self, n: int, answers: dict, lang: str, errors: dict | None = None) -> dict:
        inst, pages = self.inst, self.pages
        page = pages[n]
        blocks, grid = [], None
        for it in page.items:
            here = {r for r in referenced_items(it.relevant)} & {x.id for x in page.items} if it.relevant else set()
            if it.relevant and not here and not evaluate(it.relevant, answers):
                continue  # skipped because of an earlier page: not shown at all
            scale = inst.scales[it.scale]
            err = (errors or {}).get(it.id)
            entry = {
                "id": it.id, "text": it.text.get(lang) or it.text[inst.default_language],
                "help": (it.help or {}).get(lang) if it.help else None, "type": scale.type,
                "required": it.required, "value": answers.get(it.id), "dynamic": bool(here),
                "error": self.t(lang, err[0], **err[1]) if err else None,
                "options": [(c.code, c.label.get(lang) or c.label[inst.default_language]) for c in scale.categories],
                "missing": [(c.code, c.label.get(lang) or c.label[inst.default_language]) for c in scale.missing],
                "min": scale.min, "max": scale.max, "integer": scale.integer, "maxlength": MAX_TEXT,
            }
            gridable = scale.type in ("ordinal", "nominal") and len(scale.categories) >= 3
            if gridable and grid is not None and grid["scale"] == it.scale:
                grid["items"].append(entry)
                continue
            grid = {"kind": "grid", "scale": it.scale, "items": [entry], "options": entry["options"],
                    "missing": entry["missing"]} if gridable else None
            blocks.append(grid or {"kind": "single", "items": [entry]})
        for b in blocks:  # a grid of one is shown as a single question
            if b["kind"] == "grid" and len(b["items"]) < self.cfg.grid_min:
                b["kind"] = "single"
        refs = set()
        for it in page.items:
            if it.relevant:
                refs |= set(referenced_items(it.relevant))
        prior = {k: v for k, v in answers.items() if k in refs and self.page_of.get(k, -1) < n}
        data = json.dumps(prior).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        shown = [k for k, p in enumerate(pages) if k == n or may_be_relevant(p, answers)]
        position = shown.index(n) + 1 if n in shown else n + 1
        return {"page": page, "n": n, "blocks": blocks, "answers_json": data,
                "title": (page.title or {}).get(lang) or (self.t(lang, "consent_title") if page.consent else ""),
                "intro": (page.intro or {}).get(lang) if page.intro else None,
                "consent_text": inst.consent.text.get(lang) if page.consent and inst.consent else None,
                "progress_n": position, "progress_total": len(shown) + 1}

    def next_page(self, n: int, answers: dict) -> int:
        k = n + 1
        while k < len(self.pages) and not page_is_relevant(self.pages[k], answers):
            k += 1
        return k

    def prev_page(self, n: int, answers: dict) -> int:
        k = n - 1
        while k > 0 and not page_is_relevant(self.pages[k], answers):
            k -= 1
        return max(k, 0)

    # --- sessions -------------------------------------------------------------
    def https(self, request: Request) -> bool:
        return self.cfg.secure_cookies or request.url.scheme == "https"

    def session_id(self, request: Request) -> str | None:
        sid = request.cookies.get(SECURE_COOKIE if self.https(request) else COOKIE)
        return sid if sid and len(sid) < 100 else None

    def set_session(self, request: Request, resp: Response, sid: str) -> None:
        secure = self.https(request)
        resp.set_cookie(SECURE_COOKIE if secure else COOKIE, sid, max_age=int(self.cfg.draft_days * 86400),
                        httponly=True, samesite="lax", secure=secure, path="/")

    def draft(self, sid: str | None) -> dict | None:
        """The session's draft, unless it expired (expired drafts are purged now and then)."""
        if not sid:
            return None
        cutoff = days_ago(self.cfg.draft_days)
        if time.monotonic() - self.last_purge > 3600:
            self.last_purge = time.monotonic()
            self.storage.purge_drafts(cutoff, wait=False)
        return self.storage.draft(sha256_hex(sid), newer_than=cutoff)

    def draft_for_resume(self, token: str) -> dict | None:
        """The unsubmitted, unexpired draft a resume token opens."""
        if not token or len(token) >= 100:
            return None
        return self.storage.draft_for_resume(sha256_hex(token), newer_than=days_ago(self.cfg.draft_days))

    def csrf_for(self, sid: str) -> str:
        return _sign(self.secret, "csrf", sid)

    def csrf_ok(self, request: Request, sid: str | None, form: dict) -> bool:
        if request.headers.get("sec-fetch-site") == "cross-site":  # a form on another site posting here
            return False
        sent = form.get("_csrf", [""])
        return bool(sid) and len(sent) == 1 and hmac.compare_digest(sent[0], self.csrf_for(sid))

    def page_token(self, sid: str, n: int) -> str:
        ms = int(time.time() * 1000)
        return f"{n}.{ms}.{_sign(self.secret, 'page', sid, n, ms)[:32]}"

    def page_seconds(self, sid: str, n: int, token: str | None) -> float | None:
        try:
            pn, ms, sig = (token or "").split(".")
            if int(pn) != n or not hmac.compare_digest(sig, _sign(self.secret, "page", sid, n, int(ms))[:32]):
                return None
            return max(0.0, time.time() - int(ms) / 1000)
        except ValueError:
            return None

    # --- limits ---------------------------------------------------------------
    @staticmethod
    def client(request: Request) -> str:
        # uvicorn puts the proxy's X-Forwarded-For here when the proxy is trusted (--forwarded-allow-ips)
        return "client:" + (request.client.host if request.client else "?")

    def limited(self, request: Request, sid: str | None, draft: dict | None) -> bool:
        """Requests per session once it has a draft, per client address before."""
        if sid and draft:
            return not self.limiter.allow(sid)
        return not self.visitors.allow(self.client(request))

    def new_draft_refused(self, request: Request) -> bool:
        client = self.client(request)
        if self.drafts_per_client.exhausted(client) or self.drafts_overall.exhausted("all"):
            return True
        self.drafts_per_client.allow(client)
        self.drafts_overall.allow("all")
        return False

    def guess_limited(self, request: Request) -> bool:
        """Whether this client (or everyone) has guessed wrong too often: then no token or code is
        even looked at, so a right guess cannot be told from a wrong one."""
        return self.wrong_per_client.exhausted(self.client(request)) or self.wrong_overall.exhausted("all")

    def wrong_guess(self, request: Request) -> None:
        self.wrong_per_client.allow(self.client(request))
        self.wrong_overall.allow("all")

    def token_refusal(self, request: Request, token: str | None, lang: str) -> Response | None:
        """The page refusing a personal token (one rate limit for every route), or None."""
        if self.token_set is None:
            return None
        if token and self.guess_limited(request):
            return self.too_many(request, lang)
        if not token or token not in self.token_set:
            if token:
                self.wrong_guess(request)
            return self.forbidden(request, lang, "need_token")
        if self.storage.token_used(sha256_hex(token)):
            return self.forbidden(request, lang, "token_used")
        return None

    async def form_of(self, request: Request) -> dict[str, list[str]]:
        return parse_form(await request.body(), request.headers.get("content-type", ""))


def _visible_controls(text: Any) -> str:
    """Free text for admins: bidi overrides (stored before they were stripped) shown as code points."""
    from instruments.web.pages import clean_text

    text = "" if text is None else str(text)
    return "".join(ch if clean_text(ch) == ch or ch in "\t\n\r" else f"[U+{ord(ch):04X}]" for ch in text)


def _error_pages(survey: _Survey):
    """Wrap a route: a broken store, an unreadable form or a bug gives a page in the respondent's
    language (503 / 400 / 500), never a bare "Internal Server Error" or a traceback."""
    def wrap(route):
        @functools.wraps(route)
        async def guarded(request: Request, *args, **kwargs):
            try:
                return await route(request, *args, **kwargs)
            except BadForm:
                return survey.message(request, _lang(survey, request), 400, "forbidden_title", "badform")
            except (SQLAlchemyError, StorageError, OSError) as exc:
                log.error("the response store failed: %s", exc)
                return survey.message(request, _lang(survey, request), 503, "unavailable_title", "unavailable",
                                      headers={"retry-after": "60"})
            except Exception:  # noqa: BLE001 - a bug: logged for the operator, a page for the respondent
                log.exception("request failed")
                return survey.message(request, _lang(survey, request), 500, "error_title", "error")
        return guarded
    return wrap


def _lang(survey: _Survey, request: Request) -> str:
    lang = getattr(request.state, "lang", None) or request.query_params.get("lang")
    return lang if lang in survey.inst.languages else survey.inst.default_language


def create_app(instrument, *, database_url: str | None = None, study_dir: str | Path | None = None,
               tokens=None, admin_password: str | None = None, config: SurveyConfig | None = None,
               storage: Storage | None = None) -> FastAPI:
    """An ASGI app serving ``instrument`` (a loaded Instrument, a library name or a path).

    ``database_url``: a SQLAlchemy URL (PostgreSQL); otherwise SQLite in
    ``study_dir/web/responses.sqlite`` (or ``./responses.sqlite``). ``tokens``:
    a file (one token a line) or an iterable; when given, each respondent needs
    ``/?token=...`` and each token yields one response. ``admin_password``
    (default: env ``RESILIENCE_ADMIN_PASSWORD``) opens ``/admin``; without one
    the admin area does not exist.
    """
    if not hasattr(instrument, "items"):
        from instruments import load_instrument

        instrument = load_instrument(instrument)
    cfg = config or SurveyConfig()
    if storage is None:
        path = Path(study_dir) / "web" / "responses.sqlite" if study_dir else Path("responses.sqlite")
        storage = Storage(database_url, path=path)
    admin_password = admin_password if admin_password is not None else os.environ.get("RESILIENCE_ADMIN_PASSWORD")
    survey = _Survey(instrument, storage, cfg, _read_tokens(tokens), admin_password)
    try:  # abandoned answers are not kept: drafts past their time go at every start
        storage.purge_drafts(days_ago(cfg.draft_days))
    except SQLAlchemyError as exc:  # a read-only store: `serve` has refused it already; the API lets it read
        log.warning("could not purge expired drafts: %s", exc)

    app = FastAPI(title=f"{instrument.title} ({instrument.id} {instrument.version})", docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.storage = storage
    app.state.instrument = instrument
    app.state.pages = survey.pages
    app.state.survey = survey
    _page_routes(app, survey)
    _answer_routes(app, survey)
    _resume_routes(app, survey)
    _withdraw_routes(app, survey)
    _admin_routes(app, survey)
    _service_routes(app, survey)
    _error_handlers(app, survey)
    guarded = Guard(app, cfg.max_body)
    guarded.state = app.state  # tests and the CLI reach the storage through app.state
    guarded.fastapi = app
    return guarded  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# respondent pages: /, /page/N, /done (what the respondent sees)
# ---------------------------------------------------------------------------

def _page_routes(app: FastAPI, s: _Survey) -> None:
    inst, pages, storage = s.inst, s.pages, s.storage
    safe = _error_pages(s)

    @app.get("/", response_class=HTMLResponse)
    @safe
    async def start(request: Request):
        sid = s.session_id(request)
        draft = s.draft(sid)
        lang = s.lang_of(request, draft)
        if s.limited(request, sid, draft):
            return s.too_many(request, lang)
        if draft and not draft["submitted"]:
            return RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
        # a token only means something with a token list (an open link may carry anything)
        token = request.query_params.get("token") if s.token_set is not None else None
        refusal = s.token_refusal(request, token, lang)
        if refusal:
            return refusal
        sid = secrets.token_urlsafe(32)  # never a cookie the browser brought: no session fixation
        ctx = s.page_context(0, {}, lang)
        return s.render(request, "page.html", lang, sid=sid, page_token=s.page_token(sid, 0), token=token or "",
                        here="/", **ctx)

    @app.get("/page/{n}", response_class=HTMLResponse)
    @safe
    async def show_page(request: Request, n: int):
        sid = s.session_id(request)
        draft = s.draft(sid)
        lang = s.lang_of(request, draft)
        if s.limited(request, sid, draft):
            return s.too_many(request, lang)
        if draft is None or draft["submitted"]:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        if n < 0 or n > draft["page"]:
            return RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
        if n >= len(pages):
            answered = len(final_answers(inst, pages, draft["answers"])[0])
            total = sum(1 for p in pages if may_be_relevant(p, draft["answers"])) + 1
            return s.render(request, "review.html", lang, sid=sid, back=s.prev_page(len(pages), draft["answers"]),
                            n_answered=answered, progress_n=total, progress_total=total, here=f"/page/{n}")
        errors = None
        if request.query_params.get("missing"):
            errors = check_page(inst, pages[n], {k: [str(v)] for k, v in draft["answers"].items()},
                                draft["answers"])[1]
        ctx = s.page_context(n, draft["answers"], lang, errors)
        # behind a proxy that rewrites Host (nginx's default) base_url is the upstream address
        origin = (s.cfg.public_url or str(request.base_url)).rstrip("/")
        resume = None
        if request.query_params.get("saved"):
            # a new secret each time the link is shown (only its hash is kept, so it cannot be shown
            # again); it replaces the draft's earlier link
            link = secrets.token_urlsafe(32)
            if await storage.issue_resume_token_async(sha256_hex(sid), sha256_hex(link)):
                resume = f"{origin}/resume/{link}"
        return s.render(request, "page.html", lang, sid=sid, page_token=s.page_token(sid, n), token="", resume=resume,
                        here=f"/page/{n}", has_errors=bool(errors), **ctx)

    @app.get("/done", response_class=HTMLResponse)
    @safe
    async def done(request: Request):
        sid = s.session_id(request)
        sh = sha256_hex(sid) if sid else None
        lang = s.lang_of(request, s.draft(sid))
        resp = storage.response_for_session(sh) if sh else None
        if resp is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        declined = declined_consent(inst, json.loads(resp["answers"]))
        return s.render(request, "done.html", lang, code=resp["response_id"], declined=declined, here="/done")


# ---------------------------------------------------------------------------
# answers: POST /page/N (save a page; a declined consent ends the survey), /submit
# ---------------------------------------------------------------------------

def _answer_routes(app: FastAPI, s: _Survey) -> None:
    inst, pages, storage = s.inst, s.pages, s.storage
    safe = _error_pages(s)

    @app.post("/page/{n}", response_class=HTMLResponse)
    @safe
    async def post_page(request: Request, n: int):
        sid = s.session_id(request)
        form = await s.form_of(request)
        lang = s.lang_of(request, None, form)
        if not s.csrf_ok(request, sid, form):
            return s.forbidden(request, lang, "expired")
        draft = s.draft(sid)
        if s.limited(request, sid, draft):
            return s.too_many(request, lang)
        if not 0 <= n < len(pages):
            return s.message(request, lang, 404, "notfound_title", "notfound")
        return await _save_page(request, sid, draft, n, form, lang)

    async def _save_page(request: Request, sid: str, draft: dict | None, n: int, form: dict, lang: str):
        token_hash = None
        if draft is None:
            if n != 0:
                return RedirectResponse(f"/?lang={lang}", status_code=303)
            token = form.get("_token", [""])[0] or None
            refusal = s.token_refusal(request, token, lang)
            if refusal:
                return refusal
            token_hash = sha256_hex(token) if token and s.token_set is not None else None
            answers, timings, reached = {}, {}, 0
            secs = s.page_seconds(sid, 0, form.get("_page", [""])[0])
            started = utc_now() if secs is None else _iso_ago(secs)
        else:
            if draft["submitted"]:
                return RedirectResponse("/done", status_code=303)
            if n > draft["page"]:
                return RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
            answers, timings, reached, started = draft["answers"], draft["timings"], draft["page"], draft["started_at"]
        action = form.get("_action", ["next"])[0]
        if action.startswith("lang-"):  # the language switcher of a page: keep what was answered so far
            lang = action[5:] if action[5:] in inst.languages else lang
        values, errors, tampered = check_page(inst, pages[n], form, answers, require=(action == "next"))
        if errors and (tampered or action == "next"):
            merged = {**answers, **values}
            ctx = s.page_context(n, merged, lang, errors)
            return s.render(request, "page.html", lang, status=422 if tampered else 200, sid=sid,
                            page_token=form.get("_page", [s.page_token(sid, n)])[0],
                            token=form.get("_token", [""])[0], has_errors=True,
                            here="/" if draft is None else f"/page/{n}", **ctx)
        if draft is None:
            if s.new_draft_refused(request):
                return s.too_many(request, lang)
            sid = secrets.token_urlsafe(32)  # a draft is born under a new id, whatever the browser sent
        answers = {k: v for k, v in answers.items() if k not in {it.id for it in pages[n].items}}
        answers.update(values)
        secs = s.page_seconds(s.session_id(request) or "", n, form.get("_page", [""])[0])
        if secs is not None:
            timings[pages[n].key] = round(timings.get(pages[n].key, 0.0) + secs, 3)
        if action == "back":
            target = s.prev_page(n, answers)
        elif action == "save" or action.startswith("lang-"):
            target = n
        else:
            target = s.next_page(n, answers)
        await storage.save_draft_async(sha256_hex(sid), instrument_id=inst.id, instrument_version=inst.version,
                                       language=lang, answers=answers, page=max(reached, target), timings=timings,
                                       started_at=started, token_hash=token_hash)
        if pages[n].consent and action == "next" and declined_consent(inst, answers):
            resp = await _submit(request, sid, lang)  # a refusal is recorded at once and ends the survey
        else:
            where = f"/page/{target}?lang={lang}" + ("&saved=1" if action == "save" else "")
            resp = RedirectResponse(where, status_code=303)
        s.set_session(request, resp, sid)
        return resp

    @app.post("/submit")
    @safe
    async def submit(request: Request):
        sid = s.session_id(request)
        form = await s.form_of(request)
        lang = s.lang_of(request, None, form)
        if not s.csrf_ok(request, sid, form):
            return s.forbidden(request, lang, "expired")
        if s.limited(request, sid, True):
            return s.too_many(request, lang)
        return await _submit(request, sid, lang)

    async def _submit(request: Request, sid: str, lang: str):
        sh = sha256_hex(sid)
        draft = s.draft(sid)
        if draft is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        if draft["submitted"]:
            done = storage.response_for_session(sh)
            return _ack(done["response_id"] if done else "")
        answers, gap = final_answers(inst, pages, draft["answers"])
        if gap is not None and not declined_consent(inst, answers):
            return RedirectResponse(f"/page/{gap}?lang={lang}&missing=1", status_code=303)
        failed = sum(1 for it in inst.attention_checks
                     if it.id in answers and it.expected is not None and answers[it.id] != it.expected)
        try:
            rid = await storage.submit_async(sh, instrument_id=inst.id, instrument_version=inst.version,
                                             language=lang, answers=answers, timings=draft["timings"],
                                             started_at=draft["started_at"], token_hash=draft["token_hash"],
                                             attention_failed=failed)
        except TokenUsed:
            return s.forbidden(request, lang, "token_used")
        return _ack(rid)

    def _ack(rid: str) -> Response:
        # the redirect is sent only after the commit: it is the acknowledgement
        resp = RedirectResponse("/done", status_code=303)
        resp.headers["x-response-id"] = rid
        return resp


# ---------------------------------------------------------------------------
# resume links: /resume/<token>
# ---------------------------------------------------------------------------

def _resume_routes(app: FastAPI, s: _Survey) -> None:
    safe = _error_pages(s)

    def resume_draft(request: Request, token: str):
        """(draft, lang, refusal): the unsubmitted draft a resume link opens, or the page refusing it."""
        if s.guess_limited(request):  # like personal tokens: while limited, no link is looked at
            lang = s.lang_of(request)
            return None, lang, s.too_many(request, lang)
        draft = s.draft_for_resume(token)  # used, replaced, expired or submitted: None
        lang = s.lang_of(request, draft)
        if not s.limiter.allow("resume:" + token[:100]) or s.limited(request, None, None):
            return draft, lang, s.too_many(request, lang)
        if draft is None:  # a link dies at submission too: it would show the reference code
            s.wrong_guess(request)
            return draft, lang, s.message(request, lang, 404, "link_title", "link")
        return draft, lang, None

    @app.get("/resume/{token}", response_class=HTMLResponse)
    @safe
    async def resume_page(request: Request, token: str):
        # a page with a button, not a redirect: mail scanners and link previews
        # fetch links, and must not use up a link that works once
        _, lang, refusal = resume_draft(request, token)
        if refusal:
            return refusal
        anchor = s.session_id(request) or secrets.token_urlsafe(32)  # what the button's CSRF token is tied to
        return s.render(request, "resume.html", lang, sid=anchor, token=token)

    @app.post("/resume/{token}")
    @safe
    async def resume(request: Request, token: str):
        form = await s.form_of(request)
        draft, lang, refusal = resume_draft(request, token)
        if refusal is not None:
            return refusal
        if not s.csrf_ok(request, s.session_id(request), form):
            return s.forbidden(request, lang, "expired")
        # the draft moves to a new session id and the token is spent: whoever else holds the
        # link (pasted into a group chat, or planted by someone) or the old cookie can neither
        # read nor change these answers
        fresh = secrets.token_urlsafe(32)
        if not await s.storage.redeem_resume_token_async(sha256_hex(token), sha256_hex(fresh),
                                                         newer_than=days_ago(s.cfg.draft_days)):
            return s.message(request, lang, 404, "link_title", "link")
        resp = RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
        s.set_session(request, resp, fresh)
        return resp


# ---------------------------------------------------------------------------
# withdrawal by reference code: /withdraw
# ---------------------------------------------------------------------------

def _withdraw_routes(app: FastAPI, s: _Survey) -> None:
    safe = _error_pages(s)

    def form_page(request: Request, lang: str, status: int = 200, error: str | None = None, code: str = ""):
        anchor = s.session_id(request) or secrets.token_urlsafe(32)
        return s.render(request, "withdraw.html", lang, status=status, sid=anchor, here="/withdraw",
                        error=s.t(lang, error) if error else None, code=code)

    @app.get("/withdraw", response_class=HTMLResponse)
    @safe
    async def withdraw_page(request: Request):
        lang = s.lang_of(request)
        if s.limited(request, None, None):
            return s.too_many(request, lang)
        return form_page(request, lang)

    @app.post("/withdraw", response_class=HTMLResponse)
    @safe
    async def withdraw(request: Request):
        form = await s.form_of(request)
        lang = s.lang_of(request, None, form)
        if not s.csrf_ok(request, s.session_id(request), form):
            return s.forbidden(request, lang, "expired")
        if s.limited(request, None, None) or s.guess_limited(request):
            return s.too_many(request, lang)
        code = form.get("code", [""])[0].strip().lower()
        if not code or len(code) > 64 or not await s.storage.withdraw_async(code, channel="web"):
            s.wrong_guess(request)  # codes are capabilities: guessing them is limited like tokens
            return form_page(request, lang, 404, "withdraw_unknown", code[:64])
        return s.message(request, lang, 200, "withdrawn_title", "withdrawn")


# ---------------------------------------------------------------------------
# admin area: /admin (HTTP Basic, only with a password)
# ---------------------------------------------------------------------------

def _admin_routes(app: FastAPI, s: _Survey) -> None:
    inst, storage = s.inst, s.storage
    safe = _error_pages(s)
    challenge = {"www-authenticate": 'Basic realm="survey admin", charset="UTF-8"'}

    def given_password(request: Request) -> str | None:
        import base64

        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            return base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""

    def denied(request: Request) -> Response | None:
        if not s.admin_password:
            return PlainTextResponse("Not found", status_code=404)
        given = given_password(request)
        if given is None:  # no credentials: ask for them (never a lockout: that is not a guess)
            return PlainTextResponse("Password required", status_code=401, headers=challenge)
        if given and hmac.compare_digest(given.encode(), s.admin_password.encode()):
            return None  # the lockout is for wrong passwords only: nobody can lock the admins out
        client = s.client(request)
        if not s.admin_failures.allow(client):
            return PlainTextResponse("Too many wrong passwords; wait a minute", status_code=429,
                                     headers={**challenge, "retry-after": "60"})
        return PlainTextResponse("Password required", status_code=401, headers=challenge)

    @app.get("/admin", response_class=HTMLResponse)
    @safe
    async def admin(request: Request):
        refusal = denied(request)
        if refusal:
            return refusal
        counts = storage.counts()
        latest = storage.responses(limit=20, newest_first=True)
        text_items = [it.id for it in inst.items if inst.scales[it.scale].type == "text"]
        return s.render(request, "admin.html", inst.default_language, counts=counts.to_dict("records"),
                        total=int(counts["n"].sum()) if len(counts) else 0, drafts=storage.drafts_open(),
                        withdrawn=len(storage.withdrawals()), latest=latest, text_items=text_items,
                        dialect=storage.dialect)

    def csv_download(request: Request, make_text, filename: str) -> Response:
        """A CSV export as an attachment, for an admin only (the text is made only then)."""
        refusal = denied(request)
        if refusal:
            return refusal
        return Response(make_text(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    @app.get("/admin/responses.csv")
    @safe
    async def admin_csv(request: Request):
        from instruments.web.export import responses_csv

        return csv_download(request, lambda: responses_csv(storage, inst), f"{inst.id}-{inst.version}-web.csv")

    @app.get("/admin/timings.csv")
    @safe
    async def admin_timings(request: Request):
        from instruments.web.export import timings_frame

        return csv_download(request, lambda: timings_frame(storage).to_csv(index=False), f"{inst.id}-timings.csv")


def _error_handlers(app: FastAPI, s: _Survey) -> None:
    """FastAPI's own refusals (no such route, a wrong method, /page/abc) as pages in the survey's
    language, not JSON in English."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        lang = _lang(s, request)
        if exc.status_code in (404, 405):
            return s.message(request, lang, exc.status_code, "notfound_title", "notfound", headers=exc.headers)
        return s.message(request, lang, exc.status_code, "error_title", "error", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_address(request: Request, exc: RequestValidationError):
        return s.message(request, _lang(s, request), 404, "notfound_title", "notfound")


# ---------------------------------------------------------------------------
# service routes: scripts, styles, health
# ---------------------------------------------------------------------------

def _service_routes(app: FastAPI, s: _Survey) -> None:
    static_types = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}

    @app.get("/relevance.js")
    async def relevance_js_route():
        return Response(s.relevance_js, media_type="text/javascript; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    @app.get("/static/{name}")
    async def static_file(name: str):
        if name not in s.static:
            return PlainTextResponse("Not found", status_code=404)
        return Response(s.static[name], media_type=static_types[name.rsplit(".", 1)[1]],
                        headers={"cache-control": "public, max-age=3600"})

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz():
        # healthy means an answer can be stored: one small durable write, not just a running process
        try:
            await asyncio.to_thread(s.storage.check_writable)
        except StorageError as exc:
            return PlainTextResponse(f"storage not writable: {exc}", status_code=503)
        return PlainTextResponse("ok")
