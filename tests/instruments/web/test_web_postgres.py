"""The web survey on PostgreSQL (SQLAlchemy + psycopg).

Runs when a server is available: ``RESILIENCE_TEST_PG_URL`` (a SQLAlchemy URL
such as ``postgresql+psycopg://user:pw@host/db``), else a server on
127.0.0.1:5432 accepting ``postgres`` without a password, else a throw-away
cluster started here with ``initdb``/``pg_ctl`` when those are installed (as
the ``postgres`` user when the tests run as root). Skipped with the reason
otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

from instruments import load_instrument
from instruments.web import Storage, TokenUsed, create_app, responses_frame
from tests._web_support import Server, free_port, plan_answers, respond

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need the psycopg package")


def _reachable(url: str) -> bool:
    from sqlalchemy import create_engine, text

    try:
        eng = create_engine(url, connect_args={"connect_timeout": 2})
        with eng.connect() as con:
            con.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


def _tool(name: str) -> str | None:
    for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"):
        if Path(d, name).exists():
            return str(Path(d, name))
    return shutil.which(name)


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    url = os.environ.get("RESILIENCE_TEST_PG_URL")
    if url:
        if not _reachable(url):
            pytest.skip(f"RESILIENCE_TEST_PG_URL is set but the server does not answer: {url.split('@')[-1]}")
        yield url
        return
    local = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    if _reachable(local):
        yield local
        return
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server: set RESILIENCE_TEST_PG_URL or install PostgreSQL (initdb, pg_ctl)")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="resilience-pg-"))  # not under pytest's root-only folder
    data, port = base / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("no PostgreSQL server and no runuser to start one as the postgres user")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        base.chmod(0o700)
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not create a PostgreSQL cluster: {r.stderr.strip()[:200]}")
    r = run(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "start",
            "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on")
    if r.returncode != 0:
        pytest.skip(f"could not start PostgreSQL: {r.stderr.strip()[:200]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def db_url(pg_url):
    """A fresh schema-less database per test (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    name = "web_" + uuid.uuid4().hex[:10]
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        con.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as con:
        con.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_postgres_store_full_flow(db_url, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    inst = load_instrument("crs")
    app = create_app(inst, database_url=db_url)
    assert app.state.storage.dialect == "postgresql"
    client = TestClient(app)
    rng = random.Random(3)
    planned = {}
    for lang in ["ur", "en", "ur"]:
        client.cookies.clear()
        answers = plan_answers(inst, rng)
        answers["AREA"] = "O'Brien\"); DROP TABLE web_responses; --"
        planned[respond(client, inst, answers, lang)] = answers
    s = app.state.storage
    assert s.count() == 3
    assert {r["response_id"]: r["answers"] for r in s.responses()} == planned
    counts = s.counts()
    assert dict(zip(counts["language"], counts["n"])) == {"en": 1, "ur": 2}
    frame = responses_frame(s, inst)
    assert list(frame["AREA"]) == [a["AREA"] for a in planned.values()]
    # one response per token, enforced by the database
    common = dict(instrument_id="crs", instrument_version=inst.version, language="en", answers={"CONSENT": 1},
                  timings={}, started_at="2026-01-01T00:00:00.000+00:00", token_hash="h1")
    s.submit("pg-a", **common)
    with pytest.raises(TokenUsed):
        s.submit("pg-b", **common)
    # a resume token moves the draft to a new session once (PostgreSQL rowcount semantics); the
    # newest token replaces an earlier one, and a submitted draft opens for no token
    s.save_draft("pg-old", instrument_id="crs", instrument_version=inst.version, language="ur",
                 answers={"CONSENT": 1, "AGEBAND": 2}, page=2, timings={}, token_hash=None)
    assert asyncio.run(s.issue_resume_token_async("pg-old", "link-1")) is True
    assert asyncio.run(s.issue_resume_token_async("pg-old", "link-2")) is True
    assert s.draft_for_resume("link-1") is None and s.draft_for_resume("link-2")["session_hash"] == "pg-old"
    assert asyncio.run(s.redeem_resume_token_async("link-1", "pg-new")) is False
    assert asyncio.run(s.redeem_resume_token_async("link-2", "pg-new")) is True
    assert asyncio.run(s.redeem_resume_token_async("link-2", "pg-other")) is False
    assert s.draft("pg-old") is None and s.draft("pg-new")["answers"] == {"CONSENT": 1, "AGEBAND": 2}
    assert asyncio.run(s.issue_resume_token_async("pg-new", "link-3")) is True
    s.submit("pg-new", instrument_id="crs", instrument_version=inst.version, language="ur",
             answers={"CONSENT": 1, "AGEBAND": 2}, timings={}, started_at="2026-01-01T00:00:00.000+00:00",
             token_hash=None)
    assert s.draft_for_resume("link-3") is None
    assert asyncio.run(s.issue_resume_token_async("pg-new", "link-4")) is False
    # the secret survives a second app on the same database (CSRF tokens stay valid after a restart)
    assert Storage(db_url).secret() == s.secret()
    s.dispose()


@pytest.mark.slow
def test_postgres_server_killed_keeps_acknowledged(db_url, tmp_path):
    from tests._web_support import respondent_burst

    inst = load_instrument("crs")
    server = Server("crs", tmp_path, database_url=db_url).start()
    try:
        acks, _, failures, _ = asyncio.run(respondent_burst(server.url, inst, 40, 10, seed=5, kill_after=15, server=server))
        assert server.proc.returncode == -9 and len(acks) >= 15
    finally:
        server.stop()
    s = Storage(db_url)
    stored = {r["response_id"]: r["answers"] for r in s.responses()}
    assert [rid for rid in acks if stored.get(rid) != acks[rid]] == []
    assert len(stored) == len(set(stored))
    s.dispose()
