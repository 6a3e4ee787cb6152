"""The hashes that key the step cache: of JSON-able inputs, of the suite's code, of its version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """sha256 of the suite's statistics and data code (not the CLI, not report templates)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        h = hashlib.sha256()
        for pkg in ("analysis", "instruments"):
            base = _PACKAGE_ROOT / pkg
            for p in sorted(base.rglob("*")):
                if p.suffix not in (".py", ".lav", ".yaml", ".json") or "cli" in p.relative_to(base).parts:
                    continue
                if p.name in ("render.py",) or "__pycache__" in p.parts:
                    continue
                h.update(str(p.relative_to(_PACKAGE_ROOT)).encode())
                h.update(p.read_bytes())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


def suite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("community-resilience-suite")
    except PackageNotFoundError:
        return "0.1.0"
