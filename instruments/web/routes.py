"""The web survey's routes, in groups, each registered on the app by one function:
respondent pages (``/``, ``/page/N``, ``/done``), answers (posting a page, ``/submit``), resume
links, withdrawal, the admin area, FastAPI's own refusals as pages, and service routes (scripts,
styles, health). Every route reads and writes through the :class:`~instruments.web.survey.Survey`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from instruments.web.pages import check_page, declined_consent, final_answers, may_be_relevant
from instruments.web.storage import StorageError, TokenUsed, days_ago, sha256_hex, utc_now
from instruments.web.survey import Survey, error_pages, iso_ago, request_language


def page_routes(app: FastAPI, s: Survey) -> None:
    """Respondent pages: ``/`` (a new respondent), ``/page/N``, the review page, ``/done``."""
    inst, pages, storage = s.inst, s.pages, s.storage
    safe = error_pages(s)

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


def answer_routes(app: FastAPI, s: Survey) -> None:
    """Answers: ``POST /page/N`` saves a page (a declined consent ends the survey), ``/submit``."""
    inst, pages, storage = s.inst, s.pages, s.storage
    safe = error_pages(s)

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
            started = utc_now() if secs is None else iso_ago(secs)
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


def resume_routes(app: FastAPI, s: Survey) -> None:
    """Resume links: ``/resume/<token>`` shows a button; posting it moves the draft to a new session."""
    safe = error_pages(s)

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


def withdraw_routes(app: FastAPI, s: Survey) -> None:
    """Withdrawal by reference code: ``/withdraw``."""
    safe = error_pages(s)

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


def admin_routes(app: FastAPI, s: Survey) -> None:
    """The admin area: ``/admin`` and its CSV exports (HTTP Basic, only with a password)."""
    inst, storage = s.inst, s.storage
    safe = error_pages(s)
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


def error_handlers(app: FastAPI, s: Survey) -> None:
    """FastAPI's own refusals (no such route, a wrong method, /page/abc) as pages in the survey's
    language, not JSON in English."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        lang = request_language(s, request)
        if exc.status_code in (404, 405):
            return s.message(request, lang, exc.status_code, "notfound_title", "notfound", headers=exc.headers)
        return s.message(request, lang, exc.status_code, "error_title", "error", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_address(request: Request, exc: RequestValidationError):
        return s.message(request, request_language(s, request), 404, "notfound_title", "notfound")


def service_routes(app: FastAPI, s: Survey) -> None:
    """Service routes: the relevance script, styles, favicon, ``/healthz``."""
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
