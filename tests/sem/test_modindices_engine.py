"""modindices on fits made by this suite's engine agree with lavaan (1e-3)."""

from pathlib import Path

import pandas as pd
import pytest

import _lavaan_fixture as L
from analysis.sem.modindices import modindices
from analysis.sem.fit import fit_sem

DATA = Path(__file__).parents[1] / "fixtures" / "data"
MODELS = Path(__file__).parents[2] / "analysis" / "models"


@pytest.mark.parametrize("case,data,model", [
    ("hs_cfa_ml", "HolzingerSwineford1939.csv", "hs.lav"),
    ("poldem_sem", "PoliticalDemocracy.csv", "poldem.lav"),
])
def test_engine_modindices_match_lavaan(case, data, model):
    fit = fit_sem((MODELS / model).read_text(), pd.read_csv(DATA / data))
    ours = modindices(fit)
    ref = pd.DataFrame(L.load(case)["modindices"])
    m = ref.merge(ours, on=["lhs", "op", "rhs"], suffixes=("_r", ""))
    assert len(m) == len(ref) == len(ours)
    for col in ["mi", "epc", "sepc.lv", "sepc.all", "sepc.nox"]:
        assert (m[col] - m[col + "_r"]).abs().max() < 1e-3, col


def test_engine_equality_labels_match_lavaan():
    rec = L.load("poldem_sem_equal")
    fit = fit_sem(rec["call"]["model"], pd.read_csv(DATA / "PoliticalDemocracy.csv"))
    ref = pd.DataFrame(rec["modindices"])
    m = ref.merge(modindices(fit), on=["lhs", "op", "rhs"], suffixes=("_r", ""))
    assert len(m) == len(ref) == 73
    assert (m["mi"] - m["mi_r"]).abs().max() < 1e-3


def test_engine_multigroup_metric_matches_lavaan():
    import json

    d = json.loads((L.FIXTURES / "lavaan" / "mi_hs_metric_school.json").read_text())
    fit = fit_sem(d["model"], pd.read_csv(DATA / "HolzingerSwineford1939.csv"), group="school",
                  group_equal="loadings")
    assert list(fit.group_labels) == d["group_labels"]
    ref = pd.DataFrame(d["modindices"])
    m = ref.merge(modindices(fit), on=["lhs", "op", "rhs", "group"], suffixes=("_r", ""))
    assert len(m) == len(ref) == 114
    for col in ["mi", "epc", "sepc.all"]:
        assert (m[col] - m[col + "_r"]).abs().max() < 1e-3, col
