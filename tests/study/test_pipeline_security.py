"""Attacks on a shared study folder (issue 12, items 4 and 5): a poisoned cache, paths that
leave the folder, a report template that would run code, model text that is not a model."""

import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import copy_study, make_study  # noqa: E402

from analysis.study.cache import CacheWarning  # noqa: E402
from analysis.study.pipeline import run_study  # noqa: E402
from analysis.study.spec import StudyError, load_study  # noqa: E402


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


# ---------------------------------------------------------------- item 5: paths stay in the study folder

OUTSIDE = [
    ("  - file: data/raw/survey_kobo.csv", "  - file: ../../../../../../etc/passwd", "data[0].file"),
    ("    format: kobo", "    format: kobo\n    mapping: ../mapping.yaml", "data[0].mapping"),
    ("models:", "models:\n  - {name: evil, file: ../../../../../etc/passwd}", "models[0].file"),
    ("models:", "models:\n  - ../evil.lav", "models[0]"),
    ("instrument: crs", "instrument: ../crs.yaml", "instrument"),
    ("  formats: [html]", "  formats: [html]\n  template: ../outside.py", "report.template"),
    ("  formats: [html]", "  formats: [html]\noutput:\n  results: ../elsewhere", "output.results"),
    ("  formats: [html]", "  formats: [html]\noutput:\n  reports: /tmp/reports", "output.reports"),
]


@pytest.mark.parametrize("old, new, field", OUTSIDE, ids=[f for _, _, f in OUTSIDE])
def test_paths_outside_the_study_folder_are_refused(tmp_path, old, new, field):
    path = make_study(tmp_path / "s", n=60)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    (tmp_path / "outside.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').write('ran')\n")
    with pytest.raises(StudyError) as err:
        load_study(path)
    issue = next(i for i in err.value.issues if i.field == field)
    assert issue.type == "outside-study" and "outside the study folder" in issue.message
    line = _line_of(path, new.splitlines()[-1].strip())
    assert str(issue).startswith(f"study.yaml:{line}:"), str(issue)
    with pytest.raises(StudyError):
        run_study(path, progress=False, report=True)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "s" / "results" / "results.json").exists()


def test_symlink_out_of_the_study_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("_uuid,TRUST1\nx,1\n")
    path = make_study(tmp_path / "s", n=60)
    (path.parent / "data" / "raw" / "link.csv").symlink_to(secret)
    path.write_text(path.read_text().replace("data/raw/survey_kobo.csv", "data/raw/link.csv"))
    with pytest.raises(StudyError, match=r"study.yaml:4:\d+ data\[0\].file: .*outside the study folder"):
        load_study(path)
    (path.parent / "data" / "raw" / "dir").symlink_to(tmp_path, target_is_directory=True)
    path.write_text(path.read_text().replace("data/raw/link.csv", "data/raw/dir/secret.csv"))
    with pytest.raises(StudyError, match="outside the study folder"):
        load_study(path)


def test_cli_run_names_the_field_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    path = make_study(tmp_path / "s", n=60)
    path.write_text(path.read_text().replace("data/raw/survey_kobo.csv", "../../../../../etc/passwd"))
    res = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert res.exit_code == 1
    text = " ".join(res.output.split())  # the console wraps long lines
    assert "study.yaml:4:11 data[0].file: '../../../../../etc/passwd' is outside the study folder" in text
    assert "Traceback" not in res.output


def test_untrusted_template_does_not_run(tmp_path):
    path = copy_study(tmp_path / "s")
    marker = tmp_path / "pwned"
    evil = path.parent / "reports" / "evil.py"
    evil.parent.mkdir(exist_ok=True)
    evil.write_text("# %%\n#| tags: [parameters]\nresults_dir = ''\n\n# %%\n"
                    f"open({str(marker)!r}, 'w').write('ran')\n")
    path.write_text(path.read_text() + "  template: reports/evil.py\n")
    run = run_study(path, progress=False, report=True)
    rec = run.step("report")
    assert rec.status == "failed" and rec.error_type == "UntrustedTemplate"
    line = _line_of(path, "template: reports/evil.py")
    assert f"study.yaml:{line}:13 report.template" in rec.message and "--trust-template" in rec.message
    assert not marker.exists()
    # the person running the study vouches for it: now it runs
    trusted = run_study(path, progress=False, report=True, trust_template=True)
    assert trusted.step("report").status == "ok", trusted.step("report").message
    assert marker.read_text() == "ran"


def test_unparsable_model_text_is_not_copied(tmp_path):
    path = copy_study(tmp_path / "s")
    secret = "root:x:0:0:root:/root:/bin/bash"
    (path.parent / "models").mkdir(exist_ok=True)
    (path.parent / "models" / "passwd.lav").write_text(secret + "\ndaemon:x:1:1:daemon:/usr/sbin\n")
    path.write_text(path.read_text().replace("comparisons:", "  - {name: leak, file: models/passwd.lav}\n"
                                             f"  - {{name: inline, syntax: '{secret}'}}\n"
                                             "comparisons:", 1))
    run = run_study(path, progress=False, report=False)
    rec = run.step("model:leak")
    assert rec.status == "failed" and rec.error_type == "ModelSyntaxError"
    assert "line 1, col 5" in rec.message
    bundle = run.results_json.read_text() + run.run_log.read_text()
    for fragment in ("root:x", "/bin/bash", "daemon"):
        assert fragment not in bundle
    assert run.results["model_syntax"]["leak"] is None and run.results["model_syntax"]["inline"] is None
    assert run.results["model_syntax"]["figure1"]  # models that parse are kept
