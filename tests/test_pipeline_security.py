"""Attacks on a shared study folder (issue 12, items 4 and 5): a poisoned cache, paths that
leave the folder, a report template that would run code, model text that is not a model."""

import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline_study import copy_study, make_study  # noqa: E402

from analysis.pipeline import CacheWarning, run_study  # noqa: E402
from analysis.study import StudyError, load_study  # noqa: E402


class _Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ---------------------------------------------------------------- item 4: the cache never runs code

def test_tampered_pickle_never_runs(tmp_path):
    path = copy_study(tmp_path / "s")
    marker = tmp_path / "pwned"
    entries = sorted((path.parent / "results" / ".cache").glob("*/*/objects.pkl"))
    assert entries, "the base study caches Python objects (fits, import details)"
    for pkl in entries:
        pkl.write_bytes(pickle.dumps(_Payload(marker)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_study(path, progress=False, report=False)
    assert not marker.exists(), "a pickle from the study folder was run"
    tampered = {p.parent.parent.name for p in entries}
    for rec in run.steps:
        if rec.name.replace(":", "_") in tampered:
            assert rec.status == "ok" and not rec.cached, rec.name
            assert "recomputed" in rec.message, rec.name
    assert any(issubclass(w.category, CacheWarning) and "failed its integrity check" in str(w.message)
               for w in caught)
    # the recomputed entries are trusted again: a third run reads them back
    again = run_study(path, progress=False, report=False)
    assert all(s.cached for s in again.steps if s.name not in ("bundle",)), again.summary()
    assert not marker.exists()


def test_tampered_json_or_parquet_is_recomputed(tmp_path):
    path = copy_study(tmp_path / "s")
    cache = path.parent / "results" / ".cache"
    data = next(cache.glob("describe/*/data.json"))
    d = json.loads(data.read_text())
    d["n"] = 3  # a forged figure would reach the report
    data.write_text(json.dumps(d))
    with pytest.warns(CacheWarning, match="describe"):
        run = run_study(path, progress=False, report=False)
    assert not run.step("describe").cached and run.results["sample"]["n"] == 400


def test_cache_key_lives_outside_the_study_folder(tmp_path, monkeypatch):
    path = copy_study(tmp_path / "s")  # its cache signed with this machine's key
    key = tmp_path / "keys" / "cache.key"
    monkeypatch.setenv("RESILIENCE_CACHE_KEY", str(key))
    with pytest.warns(CacheWarning, match="made with another key"):
        run = run_study(path, progress=False, report=False)
    # signed with another key: nothing in the copied cache is trusted
    assert not any(s.cached for s in run.steps)
    assert key.is_file() and (key.stat().st_mode & 0o077) == 0
    assert not list(path.parent.rglob("cache.key"))
