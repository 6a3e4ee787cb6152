"""The step cache under ``results/.cache``, signed with a key kept outside the study folder.

A study folder is shared, so anyone may have written into it: every entry
carries an HMAC-SHA256 over its files, and nothing (above all no pickle) is
read before the signature matches.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from analysis.study.records import StepOutput
from analysis.study.serialize import dumps, write_parquet
from instruments.ingest import file_sha256


class CacheWarning(UserWarning):
    """A cache entry failed its integrity check (tampered, damaged or signed elsewhere) and was recomputed."""


def cache_key_path() -> Path:
    """The file holding the key that signs cache entries; outside any study folder.

    ``RESILIENCE_CACHE_KEY`` names it; else ``$XDG_CONFIG_HOME/resilience/cache.key``
    (``~/.config/resilience/cache.key``).
    """
    named = os.environ.get("RESILIENCE_CACHE_KEY")
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "resilience" / "cache.key"


def _cache_key() -> bytes | None:
    """This user's secret for signing cache entries, made on first use (mode 0600); None if it cannot be."""
    path = cache_key_path()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(os.urandom(32).hex())
    except FileExistsError:  # another run made it first
        pass
    except OSError:
        return None
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


class StepCache:
    """Step outputs on disk: JSON, Parquet and (for objects a later step reuses) a pickle.

    A study folder is shared, so anyone may have written into it. Every entry
    carries an HMAC-SHA256 over its files, made with a key kept outside the
    study folder (:func:`cache_key_path`); nothing, and above all no pickle, is
    read before the signature matches. Without a key (no writable place for it), nothing is cached.
    """

    SIGNATURE = "signature"

    def __init__(self, root: Path):
        self.root = root
        self.secret = _cache_key()

    def _dir(self, step: str, key: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in step)
        return self.root / safe / key

    def _sign(self, d: Path) -> str:
        import hmac

        mac = hmac.new(self.secret, digestmod="sha256")
        for p in sorted(d.iterdir()):
            if p.name != self.SIGNATURE:
                mac.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\0")
        return mac.hexdigest()

    def _authentic(self, d: Path) -> bool:
        import hmac

        try:
            signature = (d / self.SIGNATURE).read_text(encoding="ascii").strip()
            return self.secret is not None and hmac.compare_digest(signature, self._sign(d))
        except (OSError, UnicodeDecodeError):
            return False

    def load(self, step: str, key: str) -> tuple[StepOutput | None, str]:
        """(output, problem): the output when the entry is there and authentic, else why not ("" if absent)."""
        d = self._dir(step, key)
        if not (d / "data.json").is_file():
            return None, ""
        if not self._authentic(d):
            return None, f"the cache entry of step '{step}' failed its integrity check (changed, damaged or " \
                          "made with another key)"
        try:
            out = StepOutput(data=json.loads((d / "data.json").read_text(encoding="utf-8")))
            for p in sorted(d.glob("*.parquet")):
                out.tables[p.stem] = pd.read_parquet(p)
            if (d / "objects.pkl").is_file():
                with open(d / "objects.pkl", "rb") as fh:
                    out.objects = pickle.load(fh)  # authenticated above: written by this user's runs
        except Exception as exc:  # a damaged entry is recomputed, never trusted
            return None, f"the cache entry of step '{step}' could not be read ({type(exc).__name__})"
        return out, ""

    def save(self, step: str, key: str, out: StepOutput) -> None:
        if self.secret is None:  # an entry nobody can check would never be read back
            return
        d = self._dir(step, key)
        d.parent.mkdir(parents=True, exist_ok=True)
        # an entry is a folder of files signed together, so it is built whole in a temporary folder
        # and renamed into place (instruments.atomic writes single files; a reader never sees half
        # an entry either way, and an unsigned or half one is never read)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
        try:
            for name, table in out.tables.items():
                write_parquet(table, tmp / f"{name}.parquet")
            if out.objects:
                try:
                    with open(tmp / "objects.pkl", "wb") as fh:
                        pickle.dump(out.objects, fh, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # unpicklable results are recomputed when needed
                    (tmp / "objects.pkl").unlink(missing_ok=True)
            (tmp / "data.json").write_text(dumps(out.data), encoding="utf-8")
            (tmp / self.SIGNATURE).write_text(self._sign(tmp), encoding="ascii")
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
