"""The instrument as a self-hosted web survey (FastAPI, served by uvicorn).

``create_app(instrument)`` returns an ASGI app. Respondents see the consent
page first, then one section per page, in any declared language. Everything
works without JavaScript; with it, relevance conditions hide and show items as
they are answered (the conditions are rendered to JavaScript by
:func:`instruments.relevance.to_javascript` into one static script, so the page
needs no inline script). The server applies the same rules again whatever the
browser sent (:mod:`instruments.web.pages`).

Sessions, signing and limits are in :mod:`instruments.web.survey`; the routes,
registered in groups, in :mod:`instruments.web.routes`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from instruments.web.guard import Guard
from instruments.web.routes import (admin_routes, answer_routes, error_handlers, page_routes, resume_routes,
                                    service_routes, withdraw_routes)
from instruments.web.storage import Storage, days_ago
from instruments.web.survey import Survey, SurveyConfig, read_tokens

__all__ = ["create_app"]

log = logging.getLogger(__name__)


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
    survey = Survey(instrument, storage, cfg, read_tokens(tokens), admin_password)
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
    page_routes(app, survey)
    answer_routes(app, survey)
    resume_routes(app, survey)
    withdraw_routes(app, survey)
    admin_routes(app, survey)
    service_routes(app, survey)
    error_handlers(app, survey)
    guarded = Guard(app, cfg.max_body)
    guarded.state = app.state  # tests and the CLI reach the storage through app.state
    guarded.fastapi = app
    return guarded  # type: ignore[return-value]
