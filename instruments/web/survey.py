"""What every route of the web survey shares: the instrument and its pages, the store, sessions,
signing, rate limits, templates, and the error pages (``Survey``); ``SurveyConfig``, its settings.

Sessions: the server mints every session id itself (a cookie from the browser
is never adopted unless a draft is stored under it) and gives a draft a new id
when it is created. The id lives only in the cookie: never in an address, a
page or a log line. A resume link (``/resume/<token>``) carries a separate
random secret bound to one draft: it works once, only the newest one works,
and it dies with the draft or at submission. Using it moves the draft to a new
session id, so the link and the draft's old cookie both stop working. The
database keeps only sha256 hashes of ids and tokens. Each form carries a CSRF
token, an HMAC of the session id under a secret kept in the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError

from instruments.interface import LANGUAGE_NAMES, RTL, interface_text
from instruments.relevance import to_javascript
from instruments.web.guard import BadForm, RateLimiter, parse_form
from instruments.web.pages import (MAX_TEXT, Page, build_pages, evaluate, may_be_relevant, page_is_relevant,
                                   referenced_items)
from instruments.web.storage import Storage, StorageError, days_ago, sha256_hex


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


def read_tokens(tokens) -> set[str] | None:
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


def iso_ago(seconds: float) -> str:
    return days_ago(seconds / 86400)


class Survey:
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


def error_pages(survey: Survey):
    """Wrap a route: a broken store, an unreadable form or a bug gives a page in the respondent's
    language (503 / 400 / 500), never a bare "Internal Server Error" or a traceback."""
    def wrap(route):
        @functools.wraps(route)
        async def guarded(request: Request, *args, **kwargs):
            try:
                return await route(request, *args, **kwargs)
            except BadForm:
                return survey.message(request, request_language(survey, request), 400, "forbidden_title", "badform")
            except (SQLAlchemyError, StorageError, OSError) as exc:
                log.error("the response store failed: %s", exc)
                return survey.message(request, request_language(survey, request), 503, "unavailable_title", "unavailable",
                                      headers={"retry-after": "60"})
            except Exception:  # noqa: BLE001 - a bug: logged for the operator, a page for the respondent
                log.exception("request failed")
                return survey.message(request, request_language(survey, request), 500, "error_title", "error")
        return guarded
    return wrap


def request_language(survey: Survey, request: Request) -> str:
    lang = getattr(request.state, "lang", None) or request.query_params.get("lang")
    return lang if lang in survey.inst.languages else survey.inst.default_language
