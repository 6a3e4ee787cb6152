"""The instrument as a self-hosted web survey (FastAPI, served by uvicorn).

``create_app(instrument)`` returns an ASGI app. Respondents see the consent
page first, then one section per page, in any declared language. Everything
works without JavaScript; with it, relevance conditions hide and show items as
they are answered (the conditions are rendered to JavaScript by
:func:`instruments.relevance.to_javascript` into one static script, so the page
needs no inline script). The server applies the same rules again whatever the
browser sent: codes must belong to the item's scale, numbers lie within bounds,
required items are answered, and answers to items that should have been skipped
are dropped.

Sessions: a random session id in an HttpOnly cookie is also the resume token
(``/resume/<token>``); the database keeps only its sha256. Each form carries a
CSRF token, an HMAC of the session id under a secret kept in the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..relevance import evaluate as _evaluate
from ..relevance import parse, referenced_items as _referenced, to_javascript
from .storage import Storage, TokenUsed, sha256_hex, utc_now

__all__ = ["create_app", "SurveyConfig", "Page", "build_pages", "check_page"]

HERE = Path(__file__).parent
COOKIE = "rs_sid"
MAX_BODY = 64 * 1024
MAX_TEXT = 2000
RESERVED = ("_csrf", "_page", "_lang", "_action", "_token")

# endonyms for the language switcher; the code itself for others
LANGUAGE_NAMES = {"en": "English", "ur": "اردو", "fr": "Français", "cy": "Cymraeg", "pl": "Polski",
                  "ar": "العربية", "bn": "বাংলা", "pa": "ਪੰਜਾਬੀ", "so": "Soomaali", "gu": "ગુજરાતી",
                  "tr": "Türkçe", "es": "Español", "de": "Deutsch"}
RTL = {"ur", "ar", "fa", "he", "ps", "sd", "ug", "yi"}

# interface wording; languages without an entry fall back to English
UI = {
    "en": {
        "next": "Next", "back": "Back", "save": "Save and continue later", "submit": "Submit my answers",
        "progress": "Page {n} of {total}", "required": "Please answer this question.",
        "invalid": "This answer is not one of the choices.", "number": "Please enter a number.",
        "range": "Please enter a number from {min} to {max}.", "whole": "Please enter a whole number.",
        "date": "Please enter a date as YYYY-MM-DD.", "toolong": "Please shorten this answer.",
        "errors": "Some answers need your attention.", "saved": "Your answers are saved.",
        "resume": "To continue later, open this link (keep it private: it opens your answers):",
        "review_title": "Ready to submit", "review_body": "You answered {n} questions. "
        "You can go back to change an answer, or submit now.",
        "review_body_one": "You answered 1 question. You can go back to change an answer, or submit now.",
        "done_title": "Thank you", "done_body": "Your answers have been received.",
        "code": "Your reference code (quote it to withdraw your answers):",
        "language": "Language", "optional": "(optional)", "missing": "Other answers",
        "declined": "You chose not to take part. Thank you for your time.",
        "consent_title": "About this survey", "skip": "Skip to the questions",
        "resume_once": "The link works once: when you come back, press “Save and continue later” again for a new one.",
        "forbidden_title": "Not allowed", "expired": "The form has expired or did not come from this survey. "
        "Please reload the page.", "need_token": "This survey needs the personal link you were sent.",
        "token_used": "This personal link has already been used to submit answers.",
        "busy_title": "Too many requests", "busy": "Please wait a moment and try again.",
        "notfound_title": "Not found", "notfound": "There is no such page.",
        "continue_title": "Welcome back", "continue": "Continue my survey",
        "link_title": "Link not found", "link": "This resume link is not valid or has already been used. "
        "Please check that it was copied whole.",
    },
    "ur": {
        "next": "اگلا", "back": "پیچھے", "save": "محفوظ کریں اور بعد میں جاری رکھیں", "submit": "میرے جوابات جمع کرائیں",
        "progress": "صفحہ {n} از {total}", "required": "براہ کرم اس سوال کا جواب دیں۔",
        "errors": "کچھ جوابات پر توجہ درکار ہے۔", "saved": "آپ کے جوابات محفوظ ہو گئے ہیں۔",
        "resume": "بعد میں جاری رکھنے کے لیے یہ لنک کھولیں (اسے نجی رکھیں):",
        "review_title": "جمع کرانے کے لیے تیار", "done_title": "شکریہ",
        "done_body": "آپ کے جوابات موصول ہو گئے ہیں۔", "language": "زبان", "optional": "(اختیاری)",
        "invalid": "یہ جواب دیے گئے انتخابات میں سے نہیں ہے۔", "number": "براہ کرم ایک عدد درج کریں۔",
        "range": "براہ کرم {min} سے {max} تک کوئی عدد درج کریں۔", "whole": "براہ کرم پورا عدد درج کریں۔",
        "date": "براہ کرم تاریخ YYYY-MM-DD کی شکل میں درج کریں۔", "toolong": "براہ کرم یہ جواب مختصر کریں۔",
        "review_body": "آپ نے {n} سوالات کے جواب دیے۔ آپ کوئی جواب بدلنے کے لیے پیچھے جا سکتے ہیں، یا ابھی جمع کرا سکتے ہیں۔",
        "review_body_one": "آپ نے 1 سوال کا جواب دیا۔ آپ کوئی جواب بدلنے کے لیے پیچھے جا سکتے ہیں، یا ابھی جمع کرا سکتے ہیں۔",
        "code": "آپ کا حوالہ کوڈ (اپنے جوابات واپس لینے کے لیے یہ کوڈ بتائیں):",
        "missing": "دیگر جوابات", "declined": "آپ نے حصہ نہ لینے کا انتخاب کیا۔ آپ کے وقت کا شکریہ۔",
        "consent_title": "اس سروے کے بارے میں", "skip": "سوالات پر جائیں",
        "resume_once": "یہ لنک ایک بار کام کرتا ہے: واپس آنے پر نیا لنک لینے کے لیے دوبارہ «محفوظ کریں اور بعد میں جاری رکھیں» دبائیں۔",
        "forbidden_title": "اجازت نہیں", "expired": "فارم کی مدت ختم ہو گئی ہے۔ براہ کرم صفحہ دوبارہ لوڈ کریں۔",
        "need_token": "اس سروے کے لیے وہ ذاتی لنک درکار ہے جو آپ کو بھیجا گیا تھا۔",
        "token_used": "یہ ذاتی لنک پہلے ہی جوابات جمع کرانے کے لیے استعمال ہو چکا ہے۔",
        "busy_title": "بہت زیادہ درخواستیں", "busy": "براہ کرم تھوڑی دیر انتظار کریں اور دوبارہ کوشش کریں۔",
        "notfound_title": "نہیں ملا", "notfound": "ایسا کوئی صفحہ نہیں ہے۔",
        "continue_title": "خوش آمدید", "continue": "اپنا سروے جاری رکھیں",
        "link_title": "لنک نہیں ملا", "link": "یہ لنک درست نہیں ہے یا پہلے استعمال ہو چکا ہے۔ براہ کرم دیکھیں کہ پورا لنک کاپی ہوا ہے۔",
    },
}


@functools.lru_cache(maxsize=None)
def _parsed(condition: str):
    return parse(condition)


def evaluate(condition: str, answers: dict) -> bool:
    return _evaluate(_parsed(condition), answers)


def referenced_items(condition: str) -> list[str]:
    return _referenced(_parsed(condition))


def ui(lang: str, key: str, **kw) -> str:
    text = UI.get(lang, {}).get(key) or UI["en"][key]
    return text.format(**kw) if kw else text


# ---------------------------------------------------------------------------
# pages and answer checking (pure functions, tested without a server)
# ---------------------------------------------------------------------------

@dataclass
class Page:
    key: str
    title: dict | None
    intro: dict | None
    items: list
    consent: bool = False


def build_pages(instrument) -> list[Page]:
    """The consent item on a page of its own first, then one page per section."""
    consent_id = instrument.consent.item if instrument.consent else None
    pages = []
    for sec in instrument.sections:
        items = [it for it in sec.items if it.id != consent_id]
        if consent_id and len(items) < len(sec.items):
            title = sec.title if not items else None
            pages.insert(0, Page("consent" if items else sec.id, title, None,
                                 [instrument.item(consent_id)], consent=True))
        if items:
            pages.append(Page(sec.id, sec.title, sec.intro, items))
    return pages


class _Problem(ValueError):
    def __init__(self, key: str, tampered: bool = False, **kw):
        self.key, self.tampered, self.kw = key, tampered, kw


def _parse_value(item, scale, raw: str) -> Any:
    """A submitted string as the value to store, or _Problem."""
    raw = raw.strip()
    if scale.type in ("ordinal", "nominal"):
        try:
            code = int(raw)
        except ValueError:
            raise _Problem("invalid", tampered=True) from None
        if code not in scale.codes and code not in scale.missing_codes:
            raise _Problem("invalid", tampered=True)
        return code
    if scale.type == "numeric":
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            raise _Problem("number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _Problem("number")
        if value in scale.missing_codes:
            return int(value)
        if scale.integer and value != int(value):
            raise _Problem("whole")
        lo = scale.min if scale.min is not None else float("-inf")
        hi = scale.max if scale.max is not None else float("inf")
        if not lo <= value <= hi:
            raise _Problem("range", min="…" if scale.min is None else f"{scale.min:g}",
                           max="…" if scale.max is None else f"{scale.max:g}")
        return int(value) if value == int(value) else value
    if scale.type == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise _Problem("date")
        return raw
    # free text: no control characters, bounded length; escaped wherever it is shown
    if len(raw) > MAX_TEXT:
        raise _Problem("toolong", tampered=True)
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", raw)


def check_page(instrument, page: Page, form: dict[str, list[str]], answers: dict, *,
               require: bool = True) -> tuple[dict, dict, bool]:
    """Check one page's submitted fields against the instrument.

    ``form`` maps field names to all values sent. Returns the page's answers,
    errors ``{item_id: (message key, kw)}`` and whether anything was impossible
    for an honest browser (a code outside the scale, a repeated field).
    Items whose relevance condition is false are skipped: their values dropped.
    """
    working = {k: v for k, v in answers.items() if k not in {it.id for it in page.items}}
    values: dict[str, Any] = {}
    errors: dict[str, tuple[str, dict]] = {}
    tampered = False
    for item in page.items:
        if item.relevant and not evaluate(item.relevant, working):
            continue
        scale = instrument.scales[item.scale]
        sent = [v for v in form.get(item.id, []) if v.strip() != ""]
        sent += [v for v in form.get(item.id + "__missing", []) if v.strip() != ""]
        if len(sent) > 1:
            errors[item.id] = ("invalid", {})
            tampered = True
            continue
        if not sent:
            if require and item.required:
                errors[item.id] = ("required", {})
            continue
        try:
            value = _parse_value(item, scale, sent[0])
        except _Problem as p:
            errors[item.id] = (p.key, p.kw)
            tampered = tampered or p.tampered
            continue
        values[item.id] = value
        working[item.id] = value
    return values, errors, tampered


def final_answers(instrument, pages: list[Page], answers: dict) -> tuple[dict, int | None]:
    """Answers with skipped items dropped, and the first page lacking a required answer."""
    kept: dict[str, Any] = {}
    first_gap = None
    for n, page in enumerate(pages):
        for item in page.items:
            if item.relevant and not evaluate(item.relevant, kept):
                continue
            if item.id in answers and answers[item.id] is not None:
                kept[item.id] = answers[item.id]
            elif item.required and first_gap is None:
                first_gap = n
    return kept, first_gap


def page_is_relevant(page: Page, answers: dict) -> bool:
    return any(not it.relevant or evaluate(it.relevant, answers) for it in page.items)


def _may_be_relevant(page: Page, answers: dict) -> bool:
    """For the progress bar: a page counts unless answers already given rule it out."""
    return any(not it.relevant or evaluate(it.relevant, answers)
               or any(r not in answers for r in referenced_items(it.relevant)) for it in page.items)


# ---------------------------------------------------------------------------
# configuration, signing, rate limiting
# ---------------------------------------------------------------------------

@dataclass
class SurveyConfig:
    rate_burst: int = 60          # requests a session may make at once
    rate_per_second: float = 5.0  # and then per second
    max_body: int = MAX_BODY
    secure_cookies: bool = False  # set True behind HTTPS
    grid_min: int = 2             # consecutive items sharing a scale shown as a grid
    public_url: str | None = None  # e.g. https://survey.example.org, for resume links behind a proxy


class _RateLimiter:
    """Token bucket per key (session or personal token); memory only."""

    def __init__(self, burst: int, per_second: float):
        self.burst, self.rate = burst, per_second
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self.buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self.buckets) > 200_000:  # forget idle sessions
                cutoff = now - self.burst / self.rate
                self.buckets = {k: v for k, v in self.buckets.items() if v[1] > cutoff}
            return ok


def _sign(secret: bytes, *parts: Any) -> str:
    msg = "|".join(str(p) for p in parts).encode("utf-8")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------
# ASGI middleware: body size limit and security headers
# ---------------------------------------------------------------------------

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class _Guard:
    """Refuse bodies over ``max_body`` bytes (413) and add security headers to every answer."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)]
                headers += SECURITY_HEADERS
                if not any(h[0].lower() == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _too_large(send_with_headers)
        # read the body here (it is small) so a chunked upload cannot exceed the limit either
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _too_large(send_with_headers)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


async def _too_large(send):
    text = b"Request body too large."
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(text)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})


# ---------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------

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
        from .. import load_instrument

        instrument = load_instrument(instrument)
    inst = instrument
    cfg = config or SurveyConfig()
    if storage is None:
        path = Path(study_dir) / "web" / "responses.sqlite" if study_dir else Path("responses.sqlite")
        storage = Storage(database_url, path=path)
    secret = storage.secret()
    token_set = _read_tokens(tokens)
    admin_password = admin_password if admin_password is not None else os.environ.get("RESILIENCE_ADMIN_PASSWORD")
    pages = build_pages(inst)
    page_of = {it.id: n for n, p in enumerate(pages) for it in p.items}
    limiter = _RateLimiter(cfg.rate_burst, cfg.rate_per_second)
    admin_limiter = _RateLimiter(10, 0.2)
    token_limiter = _RateLimiter(30, 1.0)  # wrong personal tokens, all sessions together: no guessing
    relevance_js = _relevance_script(pages)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)

    app = FastAPI(title=f"{inst.title} ({inst.id} {inst.version})", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.storage = storage
    app.state.instrument = inst
    app.state.pages = pages
    static = {name: (HERE / "static" / name).read_bytes() for name in ("survey.css", "survey.js")}
    static_types = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
    # cached for an hour, so the address changes with the content (an upgrade reaches everyone at once)
    asset = {name: f"/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}" for name, body in static.items()}

    # --- helpers --------------------------------------------------------------
    def lang_of(request: Request, draft: dict | None = None, form: dict | None = None) -> str:
        for cand in ((form or {}).get("_lang", [None])[0], request.query_params.get("lang"),
                     draft["language"] if draft else None):
            if cand in inst.languages:
                return cand
        return inst.default_language

    def csrf_for(sid: str) -> str:
        return _sign(secret, "csrf", sid)

    def page_token(sid: str, n: int) -> str:
        ms = int(time.time() * 1000)
        return f"{n}.{ms}.{_sign(secret, 'page', sid, n, ms)[:32]}"

    def page_seconds(sid: str, n: int, token: str | None) -> float | None:
        try:
            pn, ms, sig = (token or "").split(".")
            if int(pn) != n or not hmac.compare_digest(sig, _sign(secret, "page", sid, n, int(ms))[:32]):
                return None
            return max(0.0, time.time() - int(ms) / 1000)
        except ValueError:
            return None

    def render(name: str, lang: str, status: int = 200, sid: str | None = None, **ctx) -> HTMLResponse:
        tpl = env.get_template(name)
        html = tpl.render(lang=lang, dir="rtl" if lang.split("-")[0] in RTL else "ltr", t=lambda k, **kw: ui(lang, k, **kw),
                          inst=inst, languages=[(code, LANGUAGE_NAMES.get(code, code)) for code in inst.languages],
                          asset=asset,
                          csrf=csrf_for(sid) if sid else "", **ctx)
        resp = HTMLResponse(html, status_code=status)
        if sid:
            resp.set_cookie(COOKIE, sid, max_age=60 * 60 * 24 * 60, httponly=True, samesite="lax",
                            secure=cfg.secure_cookies, path="/")
        return resp

    def message(lang: str, status: int, title: str, body: str) -> HTMLResponse:
        """A page with a title and a sentence, both keys of UI (in the respondent's language)."""
        return render("message.html", lang, status=status, title=ui(lang, title), body=ui(lang, body))

    def forbidden(lang: str, why: str) -> HTMLResponse:
        return message(lang, 403, "forbidden_title", why)

    async def form_of(request: Request) -> dict[str, list[str]]:
        data = await request.form()
        out: dict[str, list[str]] = {}
        for k, v in data.multi_items():
            out.setdefault(k, []).append(v if isinstance(v, str) else "")
        return out

    def csrf_ok(sid: str | None, form: dict) -> bool:
        sent = form.get("_csrf", [""])
        return bool(sid) and len(sent) == 1 and hmac.compare_digest(sent[0], csrf_for(sid))

    def page_context(n: int, answers: dict, lang: str, errors: dict | None = None) -> dict:
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
                "error": ui(lang, err[0], **err[1]) if err else None,
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
            if b["kind"] == "grid" and len(b["items"]) < cfg.grid_min:
                b["kind"] = "single"
        refs = set()
        for it in page.items:
            if it.relevant:
                refs |= set(referenced_items(it.relevant))
        prior = {k: v for k, v in answers.items() if k in refs and page_of.get(k, -1) < n}
        data = json.dumps(prior).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        shown = [k for k, p in enumerate(pages) if k == n or _may_be_relevant(p, answers)]
        position = shown.index(n) + 1 if n in shown else n + 1
        return {"page": page, "n": n, "blocks": blocks, "answers_json": data,
                "title": (page.title or {}).get(lang) or (ui(lang, "consent_title") if page.consent else ""),
                "intro": (page.intro or {}).get(lang) if page.intro else None,
                "consent_text": inst.consent.text.get(lang) if page.consent and inst.consent else None,
                "progress_n": position, "progress_total": len(shown) + 1}

    def next_page(n: int, answers: dict) -> int:
        k = n + 1
        while k < len(pages) and not page_is_relevant(pages[k], answers):
            k += 1
        return k

    def prev_page(n: int, answers: dict) -> int:
        k = n - 1
        while k > 0 and not page_is_relevant(pages[k], answers):
            k -= 1
        return max(k, 0)

    def token_problem(token: str | None) -> str | None:
        if token_set is None:
            return None
        if not token or token not in token_set:
            return "need_token"
        if storage.token_used(sha256_hex(token)):
            return "token_used"
        return None

    def limited(key: str | None) -> bool:
        return key is not None and not limiter.allow(key)

    too_many = lambda lang: message(lang, 429, "busy_title", "busy")  # noqa: E731

    # --- routes -----------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def start(request: Request):
        sid = request.cookies.get(COOKIE)
        draft = storage.draft(sha256_hex(sid)) if sid else None
        lang = lang_of(request, draft)
        if limited(sid):
            return too_many(lang)
        # a token only means something with a token list (an open link may carry anything)
        token = request.query_params.get("token") if token_set is not None else None
        if draft and not draft["submitted"]:
            return RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
        problem = token_problem(token)
        if problem:
            if not token_limiter.allow("bad-token"):
                return too_many(lang)
            return forbidden(lang, problem)
        if not sid or draft:  # a fresh session for a new respondent
            sid = secrets.token_urlsafe(32)
        ctx = page_context(0, {}, lang)
        return render("page.html", lang, sid=sid, page_token=page_token(sid, 0), token=token or "", here="/", **ctx)

    @app.get("/page/{n}", response_class=HTMLResponse)
    async def show_page(request: Request, n: int):
        sid = request.cookies.get(COOKIE)
        draft = storage.draft(sha256_hex(sid)) if sid else None
        lang = lang_of(request, draft)
        if limited(sid):
            return too_many(lang)
        if draft is None or draft["submitted"]:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        if n < 0 or n > draft["page"]:
            return RedirectResponse(f"/page/{draft['page']}?lang={lang}", status_code=303)
        if n >= len(pages):
            answered = len(final_answers(inst, pages, draft["answers"])[0])
            total = sum(1 for p in pages if _may_be_relevant(p, draft["answers"])) + 1
            return render("review.html", lang, sid=sid, back=prev_page(len(pages), draft["answers"]), n_answered=answered,
                          progress_n=total, progress_total=total, here=f"/page/{n}")
        errors = None
        if request.query_params.get("missing"):
            errors = check_page(inst, pages[n], {k: [str(v)] for k, v in draft["answers"].items()},
                                draft["answers"])[1]
        ctx = page_context(n, draft["answers"], lang, errors)
        # behind a proxy that rewrites Host (nginx's default) base_url is the upstream address
        origin = (cfg.public_url or str(request.base_url)).rstrip("/")
        resume = f"{origin}/resume/{sid}" if request.query_params.get("saved") else None
        return render("page.html", lang, sid=sid, page_token=page_token(sid, n), token="", resume=resume, here=f"/page/{n}",
                      has_errors=bool(errors), **ctx)

    @app.post("/page/{n}", response_class=HTMLResponse)
    async def post_page(request: Request, n: int):
        sid = request.cookies.get(COOKIE)
        form = await form_of(request)
        lang = lang_of(request, None, form)
        if not csrf_ok(sid, form):
            return forbidden(lang, "expired")
        if limited(sid):
            return too_many(lang)
        if not 0 <= n < len(pages):
            return message(lang, 404, "notfound_title", "notfound")
        return await _post_page(request, sid, n, form, lang)

    async def _post_page(request: Request, sid: str, n: int, form: dict, lang: str):
        sh = sha256_hex(sid)
        draft = storage.draft(sh)
        token_hash = None
        if draft is None:
            if n != 0:
                return RedirectResponse(f"/?lang={lang}", status_code=303)
            token = form.get("_token", [""])[0] or None
            problem = token_problem(token)
            if problem:
                return forbidden(lang, problem)
            token_hash = sha256_hex(token) if token and token_set is not None else None
            answers, timings, reached = {}, {}, 0
            secs = page_seconds(sid, 0, form.get("_page", [""])[0])
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
            merged = {**answers, **{k: v for k, v in values.items()}}
            ctx = page_context(n, merged, lang, errors)
            return render("page.html", lang, status=422 if tampered else 200, sid=sid,
                          page_token=form.get("_page", [page_token(sid, n)])[0],
                          token=form.get("_token", [""])[0], has_errors=True,
                          here="/" if draft is None else f"/page/{n}", **ctx)
        answers = {k: v for k, v in answers.items() if k not in {it.id for it in pages[n].items}}
        answers.update(values)
        secs = page_seconds(sid, n, form.get("_page", [""])[0])
        if secs is not None:
            timings[pages[n].key] = round(timings.get(pages[n].key, 0.0) + secs, 3)
        if action == "back":
            target = prev_page(n, answers)
        elif action == "save" or action.startswith("lang-"):
            target = n
        else:
            target = next_page(n, answers)
        await storage.save_draft_async(sh, instrument_id=inst.id, instrument_version=inst.version, language=lang,
                           answers=answers, page=max(reached, target), timings=timings, started_at=started,
                           token_hash=token_hash)
        where = f"/page/{target}?lang={lang}" + ("&saved=1" if action == "save" else "")
        return RedirectResponse(where, status_code=303)

    @app.post("/submit")
    async def submit(request: Request):
        sid = request.cookies.get(COOKIE)
        form = await form_of(request)
        lang = lang_of(request, None, form)
        if not csrf_ok(sid, form):
            return forbidden(lang, "expired")
        if limited(sid):
            return too_many(lang)
        return await _submit(sid, lang)

    async def _submit(sid: str, lang: str):
        sh = sha256_hex(sid)
        draft = storage.draft(sh)
        if draft is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        if draft["submitted"]:
            done = storage.response_for_session(sh)
            return _ack(done["response_id"] if done else "")
        answers, gap = final_answers(inst, pages, draft["answers"])
        if gap is not None:
            return RedirectResponse(f"/page/{gap}?lang={lang}&missing=1", status_code=303)
        failed = sum(1 for it in inst.attention_checks
                     if it.id in answers and it.expected is not None and answers[it.id] != it.expected)
        try:
            rid = await storage.submit_async(sh, instrument_id=inst.id, instrument_version=inst.version, language=lang,
                                 answers=answers, timings=draft["timings"], started_at=draft["started_at"],
                                 token_hash=draft["token_hash"], attention_failed=failed)
        except TokenUsed:
            return forbidden(lang, "token_used")
        return _ack(rid)

    def _ack(rid: str) -> Response:
        # the redirect is sent only after the commit: it is the acknowledgement
        resp = RedirectResponse("/done", status_code=303)
        resp.headers["x-response-id"] = rid
        return resp

    @app.get("/done", response_class=HTMLResponse)
    async def done(request: Request):
        sid = request.cookies.get(COOKIE)
        sh = sha256_hex(sid) if sid else None
        draft = storage.draft(sh) if sh else None
        lang = lang_of(request, draft)
        resp = storage.response_for_session(sh) if sh else None
        if resp is None:
            return RedirectResponse(f"/?lang={lang}", status_code=303)
        declined = inst.consent is not None and resp and json.loads(resp["answers"]).get(inst.consent.item) == 0
        return render("done.html", lang, code=resp["response_id"], declined=declined, here="/done")

    def resume_draft(request: Request, token: str):
        """(draft, lang, refusal): the draft a resume link names, or the page refusing it."""
        draft = storage.draft(sha256_hex(token)) if len(token) < 100 else None
        lang = lang_of(request, draft)
        if limited(token):
            return draft, lang, too_many(lang)
        if draft is None:
            return draft, lang, message(lang, 404, "link_title", "link")
        return draft, lang, None

    @app.get("/resume/{token}", response_class=HTMLResponse)
    async def resume_page(request: Request, token: str):
        # a page with a button, not a redirect: mail scanners and link previews
        # fetch links, and must not use up a link that works once
        _, lang, refusal = resume_draft(request, token)
        return refusal or render("resume.html", lang, token=token)

    @app.post("/resume/{token}")
    async def resume(request: Request, token: str):
        draft, lang, refusal = resume_draft(request, token)
        if refusal is not None:
            return refusal
        if draft["submitted"]:
            target = "/done"
        else:
            # a new session id, so the link stops working: whoever else holds it (a link
            # pasted into a group chat, or planted by someone) cannot read these answers
            fresh = secrets.token_urlsafe(32)
            if not await storage.rekey_draft_async(sha256_hex(token), sha256_hex(fresh)):
                return message(lang, 404, "link_title", "link")
            token, target = fresh, f"/page/{draft['page']}?lang={lang}"
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token, max_age=60 * 60 * 24 * 60, httponly=True, samesite="lax",
                        secure=cfg.secure_cookies, path="/")
        return resp

    @app.get("/relevance.js")
    async def relevance_js_route():
        return Response(relevance_js, media_type="text/javascript; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    @app.get("/static/{name}")
    async def static_file(name: str):
        if name not in static:
            return PlainTextResponse("Not found", status_code=404)
        return Response(static[name], media_type=static_types[name.rsplit(".", 1)[1]],
                        headers={"cache-control": "public, max-age=3600"})

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz():
        return PlainTextResponse("ok")

    # --- admin --------------------------------------------------------------------
    def admin_ok(request: Request) -> Response | None:
        if not admin_password:
            return PlainTextResponse("Not found", status_code=404)
        import base64

        header = request.headers.get("authorization", "")
        given = ""
        if header.lower().startswith("basic "):
            try:
                given = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                given = ""
        if given and hmac.compare_digest(given.encode(), admin_password.encode()):
            return None
        if not admin_limiter.allow("admin-failures"):
            return PlainTextResponse("Too many attempts", status_code=429)
        return PlainTextResponse("Password required", status_code=401,
                                 headers={"www-authenticate": 'Basic realm="survey admin", charset="UTF-8"'})

    @app.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request):
        denied = admin_ok(request)
        if denied:
            return denied
        counts = storage.counts()
        latest = storage.responses(limit=20, newest_first=True)
        text_items = [it.id for it in inst.items if inst.scales[it.scale].type == "text"]
        return render("admin.html", inst.default_language, counts=counts.to_dict("records"),
                      total=int(counts["n"].sum()) if len(counts) else 0, drafts=storage.drafts_open(),
                      latest=latest, text_items=text_items, dialect=storage.dialect)

    @app.get("/admin/responses.csv")
    async def admin_csv(request: Request):
        denied = admin_ok(request)
        if denied:
            return denied
        from .export import responses_csv

        return Response(responses_csv(storage, inst), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": f'attachment; filename="{inst.id}-{inst.version}-web.csv"'})

    @app.get("/admin/timings.csv")
    async def admin_timings(request: Request):
        denied = admin_ok(request)
        if denied:
            return denied
        from .export import timings_frame

        return Response(timings_frame(storage).to_csv(index=False), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{inst.id}-timings.csv"'})

    guarded = _Guard(app, cfg.max_body)
    guarded.state = app.state  # tests and the CLI reach the storage through app.state
    guarded.fastapi = app
    return guarded  # type: ignore[return-value]


def _iso_ago(seconds: float) -> str:
    import datetime as _dt

    t = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds")
