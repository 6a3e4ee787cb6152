"""Load on loopback: many concurrent respondents against a real uvicorn server.

Every respondent walks the whole crs survey (consent, nine pages, submit) with
its own cookie jar. Afterwards each acknowledged submission (the 303 to /done,
sent after the commit, carrying the response id) must be in the store exactly
once with the planned answers. A second burst is cut short by SIGKILL to the
server; after a restart every acknowledged submission must still be there.

Figures are printed (run with -s to see them); the slow run also writes them to
the file named by ``RESILIENCE_WEB_LOAD_OUT`` when set (``benchmarks/web_load.json``
holds the figures of the last run by hand). Tests never write into the repository.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
from pathlib import Path

import pytest

from instruments import load_instrument
from tests._web_support import Server, respondent_burst


def _stored(study: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(study / "web" / "responses.sqlite")
    try:
        return con.execute("SELECT response_id, session_hash, answers FROM web_responses").fetchall()
    finally:
        con.close()


def _run(tmp_path, n: int, concurrency: int, n_second: int) -> dict:
    inst = load_instrument("crs")
    # every respondent comes from 127.0.0.1: lift the per-address cap on new surveys
    server = Server("crs", tmp_path, args=["--drafts-per-client-per-hour", "1000000"]).start()
    try:
        acks, seconds, failures, wall = asyncio.run(respondent_burst(server.url, inst, n, concurrency, seed=11))
        assert failures == []
        rows = _stored(tmp_path)
        ids = [r[0] for r in rows]
        assert len(acks) == n  # none lost
        assert len(ids) == len(set(ids)) == n and len({r[1] for r in rows}) == n  # none duplicated
        assert {r[0]: json.loads(r[2]) for r in rows} == acks  # every answer as planned
        per_respondent = len(inst.sections) * 2 + 3  # GET+POST per page, start, review, submit
        figures = {
            "respondents": n, "concurrency": concurrency, "wall_s": round(wall, 2),
            "responses_per_s": round(n / wall, 2), "requests_per_s": round(n * per_respondent / wall, 1),
            "respondent_seconds_median": round(statistics.median(seconds), 3),
            "respondent_seconds_p95": round(sorted(seconds)[max(0, int(0.95 * len(seconds)) - 1)], 3),
            "request_ms_mean": round(1000 * statistics.mean(seconds) / per_respondent, 1),
            "lost": 0, "duplicated": 0,
        }
        print(json.dumps(figures), flush=True)

        # second burst: SIGKILL once a third of it is acknowledged
        acks2, _, failures2, _ = asyncio.run(respondent_burst(server.url, inst, n_second, concurrency, seed=12,
                                                    kill_after=n_second // 3, server=server))
        assert server.proc.returncode == -9
        server.start()  # restart on the same files
        stored = {r[0]: json.loads(r[2]) for r in _stored(tmp_path)}
        lost = [rid for rid in acks2 if stored.get(rid) != acks2[rid]]
        assert lost == []  # every acknowledged submission survived the kill
        assert len(acks2) >= n_second // 3
        rows = _stored(tmp_path)
        assert len({r[0] for r in rows}) == len(rows) and len({r[1] for r in rows}) == len(rows)
        # the restarted server takes new responses
        acks3, _, failures3, _ = asyncio.run(respondent_burst(server.url, inst, 5, 5, seed=13))
        assert failures3 == [] and len(acks3) == 5
    finally:
        server.stop()
    figures.update({
        "second_burst": {"respondents": n_second, "acknowledged_before_kill": len(acks2),
                         "failed_after_kill": len(failures2), "acknowledged_lost": 0},
    })
    print(json.dumps(figures, indent=1))
    return figures


def test_load_small(tmp_path):
    """8 concurrent respondents, 16 responses, then a SIGKILL during 12 more (the default suite: ~10 s)."""
    figures = _run(tmp_path, n=16, concurrency=8, n_second=12)
    assert figures["responses_per_s"] > 0.2  # a floor even on a busy 2-core machine


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_load_200_concurrent_2000_responses(tmp_path):
    """The acceptance run: 200 concurrent respondents submitting 2,000 responses; then the SIGKILL burst."""
    figures = _run(tmp_path, n=2000, concurrency=200, n_second=400)
    print(json.dumps(figures, indent=1))
    if os.environ.get("RESILIENCE_WEB_LOAD_OUT"):
        Path(os.environ["RESILIENCE_WEB_LOAD_OUT"]).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
