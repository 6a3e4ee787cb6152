"""Helpers for the web survey tests: a real server on loopback and scripted respondents."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from instruments.relevance import evaluate
from instruments.web.pages import build_pages

ROOT = Path(__file__).resolve().parents[1]
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
PAGE = re.compile(r'name="_page" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`resilience serve` in a subprocess on 127.0.0.1 (killable, restartable)."""

    def __init__(self, instrument: str, study: Path, *, database_url: str | None = None, tokens: Path | None = None,
                 env: dict | None = None, args: list[str] | None = None):
        self.instrument, self.study, self.database_url, self.tokens = instrument, study, database_url, tokens
        self.args = list(args or [])
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Server":
        cmd = [sys.executable, "-m", "analysis.cli.main", "serve", self.instrument, "--study", str(self.study),
               "--port", str(self.port)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.tokens:
            cmd += ["--tokens", str(self.tokens)]
        cmd += self.args
        self.log = open(self.study / f"server-{self.port}-{time.time_ns()}.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start: " + Path(self.log.name).read_text())

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()


def fields(html: str) -> dict[str, str]:
    return {"_csrf": CSRF.search(html).group(1), "_page": PAGE.search(html).group(1)}


def plan_answers(instrument, rng: random.Random, *, language: str | None = None) -> dict:
    """A complete, valid set of answers for one respondent (consent given, skips honoured)."""
    answers: dict = {}
    for page in build_pages(instrument):
        for it in page.items:
            if it.relevant and not evaluate(it.relevant, answers):
                continue
            scale = instrument.scales[it.scale]
            if it.role == "consent":
                answers[it.id] = 1
            elif scale.type in ("ordinal", "nominal"):
                codes = list(scale.codes) + list(scale.missing_codes[:1])
                answers[it.id] = rng.choice(codes)
            elif scale.type == "numeric":
                answers[it.id] = rng.randint(int(scale.min or 0), int(scale.max or 10))
            elif scale.type == "text":
                if it.required or rng.random() < 0.5:
                    answers[it.id] = rng.choice(["North ward", "شمالی محلہ", "=1+1", "Flat 3, 'B' block; --"])
    return answers


def page_form(page, answers: dict) -> dict:
    return {it.id: str(answers[it.id]) for it in page.items if it.id in answers}


class _Retrying:
    """Resend a request once when a reused keep-alive connection was closed before any answer.

    Browsers do the same; page posts and the submit are idempotent per session
    (a second submit returns the first acknowledgement).
    """

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def _send(self, method, url, **kw):
        try:
            return await self.client.request(method, url, **kw)
        except httpx.RemoteProtocolError:
            return await self.client.request(method, url, **kw)

    async def get(self, url, **kw):
        return await self._send("GET", url, **kw)

    async def post(self, url, **kw):
        return await self._send("POST", url, **kw)


async def respond_async(client: httpx.AsyncClient, instrument, answers: dict, lang: str) -> str:
    """One respondent through every page with an async client; the acknowledged response id."""
    pages = build_pages(instrument)
    client = _Retrying(client)
    r = await client.get(f"/?lang={lang}")
    r.raise_for_status()
    html, n = r.text, 0
    while True:
        data = {**fields(html), "_lang": lang, "_action": "next", **page_form(pages[n], answers)}
        r = await client.post(f"/page/{n}", data=data)
        assert r.status_code == 303, (r.status_code, r.text[:500])
        where = r.headers["location"]
        r = await client.get(where)
        r.raise_for_status()
        html = r.text
        n = int(re.search(r"/page/(\d+)", where).group(1))
        if n >= len(pages):
            break
    r = await client.post("/submit", data={"_csrf": CSRF.search(html).group(1), "_lang": lang})
    assert r.status_code == 303 and r.headers["location"] == "/done", (r.status_code, r.text[:300])
    return r.headers["x-response-id"]


def respond(client, instrument, answers: dict, lang: str) -> str:
    """The same with a synchronous client (TestClient or httpx.Client)."""
    pages = build_pages(instrument)
    r = client.get(f"/?lang={lang}")
    html, n = r.text, 0
    while True:
        data = {**fields(html), "_lang": lang, "_action": "next", **page_form(pages[n], answers)}
        r = client.post(f"/page/{n}", data=data, follow_redirects=False)
        assert r.status_code == 303, (r.status_code, r.text[:500])
        where = r.headers["location"]
        html = client.get(where).text
        n = int(re.search(r"/page/(\d+)", where).group(1))
        if n >= len(pages):
            break
    r = client.post("/submit", data={"_csrf": CSRF.search(html).group(1), "_lang": lang}, follow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return r.headers["x-response-id"]


class ThreadServer:
    """uvicorn in a thread of the test process: starts in a fraction of a second."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ThreadServer":
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread:
            self.thread.join(10)


async def respondent_burst(url: str, inst, n: int, concurrency: int, seed: int, *, kill_after: int | None = None,
                 server: Server | None = None):
    """Run n respondents, at most `concurrency` at a time; acks {response_id: answers}, latencies."""
    rng = random.Random(seed)
    plans = [(plan_answers(inst, rng), ["en", "ur"][i % 2]) for i in range(n)]
    acks: dict[str, dict] = {}
    seconds: list[float] = []
    failures: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    killed = asyncio.Event()

    async def one(answers, lang):
        async with sem:
            if killed.is_set():
                return
            t0 = time.perf_counter()
            try:
                async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:  # own cookie jar
                    rid = await respond_async(client, inst, answers, lang)
            except (httpx.HTTPError, AssertionError) as exc:
                failures.append(repr(exc)[:200])
                return
            seconds.append(time.perf_counter() - t0)
            acks[rid] = answers
            if kill_after is not None and len(acks) >= kill_after and not killed.is_set():
                killed.set()
                server.kill()  # SIGKILL while other respondents are mid-way

    t0 = time.perf_counter()
    await asyncio.gather(*(one(a, lang) for a, lang in plans))
    wall = time.perf_counter() - t0
    return acks, seconds, failures, wall
