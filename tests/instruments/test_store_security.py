"""The study store under attack (issue 12, items 2 and 3).

Item 2: a column header is data, never SQL. Item 3: an import is atomic and
idempotent: killed at any stage (the ``RESILIENCE_KILL_AT`` test hook of
:mod:`instruments.store`) and run again, each response is stored exactly once,
the raw copy is kept once and byte for byte, and two imports into one study
take turns on a lock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import load_instrument
from instruments.export_data import to_kobo, write_csv, write_kobo
from instruments.ingest import ImportError_, file_sha256
from instruments.store import KILL_ENV, KILL_STAGES, StoreBusy, Study
from _fielding_data import make_responses

ROOT = Path(__file__).resolve().parents[2]
INJECTION = "note\" VARCHAR; COPY (SELECT 42 AS pwned) TO 'pwned.csv'; --"


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


def _kobo_with(crs, path: Path, n: int, seed: int, prefix: str, extra: dict[str, str]) -> Path:
    frame = to_kobo(make_responses(crs, n=n, seed=seed).assign(respondent_id=lambda d: prefix + d["respondent_id"]), crs)
    for header, value in extra.items():
        frame[header] = value
    return write_csv(frame, path, sep=";")


# --- item 2: SQL injection through a column header ----------------------------

def test_hostile_header_is_stored_as_data_never_run(crs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where COPY ... TO 'pwned.csv' would write
    study = Study(tmp_path / "study")
    assert study.import_file(_kobo_with(crs, tmp_path / "w1.csv", 5, 1, "A", {}), crs).n_rows == 5
    hostile = _kobo_with(crs, tmp_path / "w2.csv", 4, 2, "B", {INJECTION: "first", 'say "hi"': "x"})
    second = study.import_file(hostile, crs)
    assert second.added and second.n_rows == 4
    assert not list(tmp_path.rglob("pwned*")), "the header ran as SQL"
    # a header that merely contains a quote does not break later imports
    third = study.import_file(_kobo_with(crs, tmp_path / "w3.csv", 3, 3, "C", {'a"b': "1", "import_id": "99"}), crs)
    assert third.added and third.n_rows == 3
    rows = study.responses()
    assert len(rows) == 12 and rows["import_id"].tolist() == [1] * 5 + [2] * 4 + [3] * 3
    with study.connect(read_only=True) as con:
        names = [r[0] for r in con.execute("DESCRIBE responses").fetchall()]
    assert not [c for c in names if '"' in c or ";" in c or " " in c]
    # the original headers are kept as data, with their values
    kept = [json.loads(v) if isinstance(v, str) else None for v in rows["_unknown_columns"]]
    assert kept[5] == {INJECTION: "first", 'say "hi"': "x"} and kept[9] == {'a"b': "1", "import_id": "99"}
    assert kept[0] is None
    # and come back under those headers (a header naming a store column stays in the JSON)
    assert rows[INJECTION].tolist()[5:9] == ["first"] * 4 and rows[INJECTION].isna().sum() == 8
    assert rows["a\"b"].iloc[9] == "1" and rows["import_id"].iloc[9] == 3


def test_responses_filter_takes_values_not_sql(crs, tmp_path):
    study = Study(tmp_path / "study")
    study.import_file(write_kobo(make_responses(crs, n=6, seed=4), crs, tmp_path / "k.csv"), crs, wave="2025")
    assert len(study.responses(wave="2025")) == 6
    assert len(study.responses(wave="x' OR '1'='1")) == 0


# --- item 3: atomic, idempotent imports ---------------------------------------

_IMPORT = """
import sys
from instruments import load_instrument
from instruments.store import Study
print("ready", flush=True)
Study(sys.argv[1]).import_file(sys.argv[2], load_instrument("crs"), wave="w1")
print("stored")
"""


def _import_in_child(study: Path, data: Path, stage: str | None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(KILL_ENV, None)
    if stage is not None:
        env[KILL_ENV] = stage
    return subprocess.Popen([sys.executable, "-c", _IMPORT, str(study), str(data)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _assert_stored_once(study: Study, src: Path, n: int) -> None:
    rows = study.responses()
    assert len(rows) == n and rows["respondent_id"].is_unique, f"{len(rows)} rows stored for {n}"
    assert len(study.imports()) == 1
    manifest = json.loads(study.manifest_path.read_text(encoding="utf-8"))
    assert [f["sha256"] for f in manifest["files"]] == [file_sha256(src)]
    kept = sorted(p.name for p in study.raw_dir.iterdir())
    assert kept == sorted([src.name, "manifest.json"]), kept  # one raw copy, no temporary files
    assert (study.raw_dir / src.name).read_bytes() == src.read_bytes()
    assert study.verify()["ok"].all()


def test_kill_stages_are_documented():
    from instruments import store

    for stage in KILL_STAGES:
        assert f"``{stage}``" in store.__doc__


@pytest.mark.parametrize("stage", KILL_STAGES)
def test_killed_import_run_again_stores_everything_once(crs, tmp_path, stage):
    src = write_kobo(make_responses(crs, n=30, seed=7), crs, tmp_path / "export.csv")
    folder = tmp_path / "study"
    child = _import_in_child(folder, src, stage)
    out, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, (out, err)
    assert "stored" not in out  # killed before it acknowledged the import
    study = Study(folder)
    again = study.import_file(src, crs, wave="w1")
    # once the transaction committed, the import happened: running it again adds nothing
    assert again.added == (KILL_STAGES.index(stage) < KILL_STAGES.index("committed"))
    _assert_stored_once(study, src, 30)
    assert not study.import_file(src, crs, wave="w1").added
    _assert_stored_once(study, src, 30)


def test_unknown_kill_stage_is_refused(crs, tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_ENV, "after-lunch")
    src = write_kobo(make_responses(crs, n=3, seed=1), crs, tmp_path / "k.csv")
    with pytest.raises(ValueError, match="raw-copied"):
        Study(tmp_path / "study").import_file(src, crs)


def test_orphan_raw_copy_under_another_name_is_reused(crs, tmp_path):
    src = write_kobo(make_responses(crs, n=8, seed=9), crs, tmp_path / "export.csv")
    study = Study(tmp_path / "study")
    study.raw_dir.mkdir(parents=True)
    (study.raw_dir / "earlier_name.csv").write_bytes(src.read_bytes())  # left by a killed import
    (study.raw_dir / ".incoming.abc123").write_bytes(b"half a cop")
    stored = study.import_file(src, crs)
    assert stored.added and Path(stored.raw_path).name == "earlier_name.csv"
    assert sorted(p.name for p in study.raw_dir.iterdir()) == ["earlier_name.csv", "manifest.json"]


def test_a_file_named_like_the_manifest_never_replaces_it(crs, tmp_path):
    src = write_kobo(make_responses(crs, n=4, seed=2), crs, tmp_path / "manifest.json")
    study = Study(tmp_path / "study")
    stored = study.import_file(src, crs)
    assert Path(stored.raw_path).name != "manifest.json"
    assert Path(stored.raw_path).read_bytes() == src.read_bytes()
    assert study.manifest()["files"][0]["name"] == Path(stored.raw_path).name


def test_second_import_waits_for_the_first(crs, tmp_path):
    a = write_kobo(make_responses(crs, n=10, seed=1), crs, tmp_path / "a.csv")
    b = write_kobo(make_responses(crs, n=10, seed=2).assign(respondent_id=lambda d: "B" + d["respondent_id"]),
                   crs, tmp_path / "b.csv")
    study = Study(tmp_path / "study")
    held = threading.Event()

    def first():  # an import (or the web survey's withdrawal) holding the store
        with study.lock():
            held.set()
            time.sleep(1.5)
        study.import_file(a, crs)

    t = threading.Thread(target=first)
    t.start()
    held.wait(10)
    started = time.monotonic()
    heard = []
    second = Study(tmp_path / "study").import_file(b, crs, progress=lambda phase, *_: heard.append(phase))
    waited = time.monotonic() - started
    t.join()
    assert second.added and waited > 1.0
    notes = [p for p in heard if p.startswith("waiting for another import")]
    assert len(notes) == 1 and notes[0].startswith(f"waiting for another import into study (pid {os.getpid()} since")
    assert sorted(study.imports()["name"]) == ["a.csv", "b.csv"]
    assert len(study.responses()) == 20


def test_two_processes_importing_at_once_take_turns(crs, tmp_path):
    folder = tmp_path / "study"
    files = [write_kobo(make_responses(crs, n=25, seed=s).assign(respondent_id=lambda d, s=s: f"P{s}" + d["respondent_id"]),
                        crs, tmp_path / f"part{s}.csv") for s in (1, 2)]
    children = [_import_in_child(folder, f, None) for f in files]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0 and "stored" in out, err
    study = Study(folder)
    assert sorted(study.imports()["name"]) == ["part1.csv", "part2.csv"]
    assert len(study.responses()) == 50 and study.responses()["respondent_id"].is_unique
    assert len(study.manifest()["files"]) == 2


def test_busy_store_gives_a_clear_message_not_a_traceback(crs, tmp_path, monkeypatch):
    src = write_kobo(make_responses(crs, n=5, seed=3), crs, tmp_path / "k.csv")
    folder = tmp_path / "study"
    monkeypatch.setattr(Study, "LOCK_TIMEOUT", 0.5)
    with Study(folder).lock():
        with pytest.raises(StoreBusy) as info:
            Study(folder).import_file(src, crs)
        assert info.value.issue.type == "store-busy"
        assert "another import" in info.value.issue.message and str(os.getpid()) in info.value.issue.message
        res = CliRunner().invoke(app, ["import", str(src), "-i", "crs", "--study", str(folder)])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert "waited 0.5 s" in res.output and "another import" in res.output
    assert Study(folder).import_file(src, crs).added  # free again


def test_store_held_open_by_another_program_is_a_clear_message(crs, tmp_path, monkeypatch):
    folder = tmp_path / "study"
    src = write_kobo(make_responses(crs, n=5, seed=3), crs, tmp_path / "k.csv")
    Study(folder).import_file(src, crs)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(60)", str(folder / "study.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        monkeypatch.setattr(Study, "LOCK_TIMEOUT", 0.5)
        other = write_kobo(make_responses(crs, n=5, seed=4).assign(respondent_id=lambda d: "X" + d["respondent_id"]),
                           crs, tmp_path / "other.csv")
        res = CliRunner().invoke(app, ["import", str(other), "-i", "crs", "--study", str(folder)])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert "in use by another program" in res.output and "waited 0.5 s" in res.output
    finally:
        holder.kill()
        holder.wait()
    assert Study(folder).import_file(other, crs).n_rows == 5


def test_a_hostile_store_file_is_an_error_not_a_traceback(crs, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "study.duckdb").write_bytes(b"not a database at all" * 100)
    src = write_kobo(make_responses(crs, n=3, seed=3), crs, tmp_path / "k.csv")
    with pytest.raises(ImportError_) as info:
        Study(folder).import_file(src, crs)
    assert "study.duckdb" in info.value.issue.message


@pytest.mark.slow
def test_random_sigkill_never_loses_or_doubles_an_import(crs, tmp_path):
    """The issue's attack: 10 kills at random moments of a 21,000-row import."""
    data = make_responses(crs, n=21_000, seed=21)
    src = write_kobo(data, crs, tmp_path / "big.csv")
    probe = _import_in_child(tmp_path / "probe", src, None)
    assert probe.stdout.readline().strip() == "ready"
    started = time.monotonic()
    assert probe.wait(timeout=600) == 0
    took = time.monotonic() - started  # the import itself, after the interpreter started
    rng = random.Random(12)
    committed = 0
    for attempt in range(10):
        folder = tmp_path / f"study{attempt}"
        child = _import_in_child(folder, src, None)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 1.1 * took))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        study = Study(folder)
        committed += not study.import_file(src, crs, wave="w1").added
        _assert_stored_once(study, src, 21_000)
    assert committed < 10  # most kills landed inside the import


def test_a_study_folder_that_cannot_be_written_is_a_clear_message(crs, tmp_path):
    src = write_kobo(make_responses(crs, n=3, seed=5), crs, tmp_path / "k.csv")
    not_a_folder = tmp_path / "study.txt"
    not_a_folder.write_text("a file where the study folder should be")
    res = CliRunner().invoke(app, ["import", str(src), "-i", "crs", "--study", str(not_a_folder)])
    assert res.exit_code == 1 and "Traceback" not in res.output and not isinstance(res.exception, OSError)
    assert "cannot store the import" in res.output and "study.txt" in res.output


def test_a_failed_database_write_keeps_nothing_and_says_why(crs, tmp_path, monkeypatch):
    import duckdb

    import instruments.store as store

    src = write_kobo(make_responses(crs, n=6, seed=6), crs, tmp_path / "k.csv")
    study = Study(tmp_path / "study")
    real = store._append

    def disk_full(con, table, frame):
        real(con, table, frame)
        raise duckdb.IOException("IO Error: No space left on device")

    monkeypatch.setattr(store, "_append", disk_full)
    with pytest.raises(ImportError_) as info:
        study.import_file(src, crs)
    assert info.value.issue.type == "store-write-failed" and "No space left" in info.value.issue.message
    assert study.responses().empty and study.imports().empty
    assert [p.name for p in study.raw_dir.iterdir() if p.name != "manifest.json"] == []
    monkeypatch.setattr(store, "_append", real)
    assert study.import_file(src, crs).n_rows == 6
    _assert_stored_once(study, src, 6)
