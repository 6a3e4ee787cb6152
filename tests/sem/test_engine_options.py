"""FitResult.options records the inference lavaan would report for each estimator."""

from pathlib import Path

import pandas as pd
import pytest

from analysis.sem.fit import fit_sem

ROOT = Path(__file__).resolve().parents[2]


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


def test_latent_named_like_a_data_column_is_reported():
    data = pd.read_csv(ROOT / "tests/fixtures/data/HolzingerSwineford1939.csv")
    data["visual"] = data[["x1", "x2", "x3"]].mean(axis=1)  # a score column named like the factor
    fit = fit_sem((ROOT / "analysis/models/hs.lav").read_text(), data, warn=False)
    messages = [w["message"] for w in fit.warnings]
    assert any("visual are also columns of the data" in m for m in messages)
    assert fit.fit_indices["chisq"] == pytest.approx(85.3055, abs=1e-3)  # the column is not used


@pytest.mark.parametrize("model, match", [
    (["visual =~ x1 + x2 + x3", "textual =~ x4 + x5 + x6"], "a list of 2 lines was given: join them with newlines"),
    (42, "Got int instead"),
    (None, "Got NoneType instead"),
    ({"visual": "x1 + x2 + x3"}, "Got dict instead"),
])
def test_model_of_the_wrong_type_is_refused_by_name(model, match):
    from analysis.errors import OptionError

    data = pd.read_csv(ROOT / "tests/fixtures/data/HolzingerSwineford1939.csv")
    with pytest.raises(OptionError, match=match) as err:
        fit_sem(model, data)
    assert "The 'model' parameter of fit_sem must be lavaan model syntax" in str(err.value)


@pytest.mark.parametrize("ordered", [["zz"], ["x4"]])
def test_ordered_names_outside_the_model_are_refused_by_name(ordered):
    # lavaan ignores them with a warning yet switches the estimator to WLSMV; a bare KeyError was raised here
    from analysis.errors import OptionError

    data = pd.read_csv(ROOT / "tests/fixtures/data/HolzingerSwineford1939.csv")
    with pytest.raises(OptionError, match=f"ordered= names '{ordered[0]}', not an observed variable of the model"):
        fit_sem("visual =~ x1 + x2 + x3", data, ordered=ordered)


def test_a_list_of_tests_as_lavaans_test_c():
    # lavaan: test = c("standard", "satorra.bentler") on HS gives chisq.scaled 80.872 (as test = "sb")
    from analysis.errors import OptionError

    data = pd.read_csv(ROOT / "tests/fixtures/data/HolzingerSwineford1939.csv")
    model = (ROOT / "analysis/models/hs.lav").read_text()
    fit = fit_sem(model, data, test=["standard", "satorra.bentler"])
    assert fit.fit_indices["chisq.scaled"] == pytest.approx(80.872, abs=1e-3)
    assert fit.inference.test == "satorra.bentler"
    with pytest.raises(OptionError, match="at most one test beside the estimator's own"):
        fit_sem(model, data, test=["satorra.bentler", "mean.var.adjusted"])
    with pytest.raises(OptionError, match="invalid value"):
        fit_sem(model, data, test=["standard", "no.such.test"])
