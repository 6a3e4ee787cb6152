"""FitResult.options records the inference lavaan would report for each estimator."""

from pathlib import Path

import pandas as pd
import pytest

from analysis.sem import fit_sem

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("estimator, missing, expected", [
    ("ML", "listwise", ("standard", "standard", "expected")),
    ("ML", "fiml", ("standard", "standard", "observed")),
    ("MLR", "listwise", ("robust.huber.white", "yuan.bentler.mplus", "observed")),
    ("MLM", "listwise", ("robust.sem", "satorra.bentler", "expected")),
])
def test_options_name_the_inference_used(estimator, missing, expected):
    data = pd.read_csv(ROOT / "tests/fixtures/data/HolzingerSwineford1939.csv")
    fit = fit_sem((ROOT / "analysis/models/hs.lav").read_text(), data, estimator=estimator, missing=missing)
    assert (fit.options["se"], fit.options["test"], fit.options["information"]) == expected
