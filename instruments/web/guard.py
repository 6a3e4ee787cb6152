"""What the web survey does to every request before a route sees it.

* :class:`Guard` (ASGI middleware): bodies over the limit are refused (413,
  declared or streamed), HEAD is answered as GET without the body, and every
  answer carries the security headers.
* :func:`parse_form`: an urlencoded body decoded as strict UTF-8, so that bytes
  a browser would never send are refused instead of stored as mojibake.
* :class:`RateLimiter`: token buckets in memory (nothing is written to disk).
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl

__all__ = ["Guard", "RateLimiter", "BadForm", "parse_form", "SECURITY_HEADERS", "CSP"]

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
_REPLACED = {name for name, _ in SECURITY_HEADERS}


class BadForm(ValueError):
    """A request body that no browser showing our forms would send."""


def parse_form(body: bytes, content_type: str) -> dict[str, list[str]]:
    """Field name -> every value sent, from an ``application/x-www-form-urlencoded`` body."""
    kind = content_type.split(";")[0].strip().lower()
    if body and kind != "application/x-www-form-urlencoded":
        raise BadForm(f"content type {kind or 'none'}")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:  # raw bytes, or percent-escapes that are not UTF-8
        raise BadForm(f"not UTF-8: {exc.reason}") from None
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


class RateLimiter:
    """Token bucket per key: ``burst`` at once, then ``per_second``."""

    def __init__(self, burst: float, per_second: float):
        self.burst, self.rate = float(burst), per_second
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self.buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when none is left."""
        now = time.monotonic()
        with self.lock:
            tokens = self._level(key, now)
            ok = tokens >= 1.0
            self.buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self.buckets) > 200_000:  # forget idle keys
                cutoff = now - self.burst / max(self.rate, 1e-9)
                self.buckets = {k: v for k, v in self.buckets.items() if v[1] > cutoff}
            return ok

    def exhausted(self, key: str) -> bool:
        """Whether ``key`` has no token left (without taking one)."""
        with self.lock:
            return self._level(key, time.monotonic()) < 1.0


class Guard:
    """Refuse bodies over ``max_body`` bytes (413), answer HEAD, add security headers."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = scope["method"] == "HEAD"
        if head:  # the GET route answers; the body is left out (RFC 9110 9.3.2)
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in _REPLACED]
                headers += SECURITY_HEADERS
                if not any(h[0].lower() == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
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
