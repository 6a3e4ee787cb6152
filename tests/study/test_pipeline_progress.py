"""The progress bar's total is the number of steps that tick it (it once ended at 20/19)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import copy_study  # noqa: E402

import analysis.study.pipeline as pipeline  # noqa: E402


class _Counting:
    """Stands in for the rich bar: remembers the total and counts the ticks."""

    made: list["_Counting"] = []

    def __init__(self, enabled, total):
        self.total, self.ticks, self.titles = total, 0, []
        _Counting.made.append(self)

    def start(self, title):
        pass

    def done(self, record):
        self.ticks += 1
        self.titles.append(record.name)

    def close(self):
        pass


@pytest.mark.parametrize("report", [False, True])
def test_progress_total_equals_the_steps_run(tmp_path, monkeypatch, report):
    monkeypatch.setattr(pipeline, "Progress", _Counting)
    # the report's rendering is tested elsewhere; here only its tick counts
    monkeypatch.setattr(pipeline, "render_study_report", lambda *a, **k: {"outputs": {}, "cached": True})
    _Counting.made.clear()
    run = pipeline.run_study(copy_study(tmp_path / "s"), progress=True, report=report)
    bar = _Counting.made[-1]
    assert bar.ticks == len(run.steps) == bar.total, bar.titles
    assert bar.titles[-1] == ("report" if report else "bundle")
    assert "cfa" in bar.titles  # the step the old total left out
