"""The study pipeline end to end on a small study: results, caching, determinism."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import base_run, copy_study  # noqa: E402

from analysis.study.pipeline import run_study  # noqa: E402


@pytest.fixture(scope="module")
def first():
    return base_run()


def _log(run):
    return {s["step"]: s for s in json.loads(run.run_log.read_text())["steps"]}


def test_every_step_succeeds_and_the_bundle_is_complete(first):
    status = {s.name: s.status for s in first.steps}
    assert all(v == "ok" for v in status.values()), {s.name: s.message for s in first.steps if s.status != "ok"}
    for step in ("import", "validate", "score", "quality", "describe", "reliability", "cfa", "invariance:LANG",
                 "model:figure1", "model:top_down", "compare:figure1-vs-top_down", "bootstrap:figure1",
                 "groups:LANG"):
        assert status[step] == "ok"
    r = json.loads(first.results_json.read_text())
    assert r["sample"]["n"] == 400 == r["import"]["n_rows"]
    assert r["instrument"]["id"] == "crs" and len(r["instrument"]["sha256"]) == 64
    assert r["inputs"][0]["sha256"] == first.results["inputs"][0]["sha256"]
    cfa = r["cfa"]["fit"]
    assert cfa["df"] == 48 and 0.8 < cfa["cfi"] <= 1  # 4 factors x 3 items: 78 moments - 30 free
    f1 = r["models"]["figure1"]
    # construct scores sit beside the items in the scored table, but never enter a model
    assert not [w for w in f1.get("warnings", []) if "also columns of the data" in str(w)]
    effects = {e["lhs"]: e for e in f1["estimates"] if e["op"] == ":="}
    boot = {e["effect"]: e for e in r["bootstrap"]["effects"]}
    assert set(boot) == {"cult_trust_negot_navig", "total_cult_navig"} == set(effects)
    for name, e in boot.items():  # the bootstrap keeps the point estimate and brackets it
        assert e["est"] == pytest.approx(effects[name]["est"], abs=1e-12)
        assert e["ci.lower"] < e["est"] < e["ci.upper"]
    assert r["bootstrap"]["bootstrap"]["R"] == 20
    v = r["verdict"]
    t = {row["model"]: row for row in r["comparisons"]["figure1-vs-top_down"]["table"]}
    assert v["delta_aic"] == pytest.approx(t["top_down"]["aic"] - t["figure1"]["aic"])
    assert v["answer"] in ("yes", "no", "unclear") and "negotiation" in v["text"]
    inv = r["invariance"]["LANG"]
    assert [s["name"] for s in inv["steps"]] == ["configural", "metric", "scalar", "strict"]
    assert sorted(inv["group_labels"]) == ["English", "Urdu"]
    assert sum(inv["nobs"]) == r["cfa"]["fit"]["ntotal"]  # the same complete cases, split by language
    for step in inv["steps"]:  # every fit of the ladder is in the bundle, and its numbers are the ladder's
        assert inv["fits"][step["name"]]["fit"]["chisq"] == pytest.approx(step["chisq"], rel=1e-12)
    assert inv["fits"]["configural"]["fit"]["df"] == 2 * r["cfa"]["fit"]["df"]  # two groups, the same model
    paths = {(p["lhs"], p["rhs"]) for p in r["group_paths"]["LANG"]["paths"]}
    assert paths == {("TRUST", "CULT"), ("NAVIG", "TRUST")}
    for p in r["group_paths"]["LANG"]["paths"]:  # labels were dropped: each group has its own path
        assert p["est.English"] != pytest.approx(p["est.Urdu"], abs=1e-6)
        assert p["wald.df"] == 1 and 0 < p["wald.pvalue"] < 1
    for rel in ("figures/path_figure1.svg", "figures/path_figure1.png", "figures/forest_effects.png",
                "figures/items_CULT.png", "figures/invariance_ladder.png", "tables/item_distributions.parquet",
                "tables/estimates_figure1.parquet"):
        assert (first.results_dir / rel).is_file(), rel
    assert "finished_at" not in first.results_json.read_text()  # times live in the run log only


def test_second_run_is_byte_identical_and_fully_cached(first, tmp_path):
    before = first.results_json.read_bytes()
    again = run_study(copy_study(tmp_path / "again"), progress=False, report=False)
    assert again.results_json.read_bytes() == before
    log = _log(again)
    assert all(s["cached"] for name, s in log.items() if name != "bundle"), log
    assert again.seconds < first.seconds


@pytest.mark.slow
def test_fresh_run_without_cache_gives_the_same_bytes(first, tmp_path):
    fresh = run_study(copy_study(tmp_path / "copy", results=False), progress=False, report=False)
    assert not any(s["cached"] for s in _log(fresh).values())
    a = json.loads(first.results_json.read_text())
    b = json.loads(fresh.results_json.read_text())
    assert a == b  # same inputs and seed: same numbers, bit for bit
    assert fresh.results_json.read_bytes() == first.results_json.read_bytes()


def test_a_changed_option_redoes_only_what_depends_on_it(first, tmp_path):
    study = copy_study(tmp_path / "copy2")
    study.write_text(study.read_text().replace("replications: 20", "replications: 25"))
    run = run_study(study, progress=False, report=False)
    log = _log(run)
    assert not log["bootstrap:figure1"]["cached"] and log["bootstrap:figure1"]["status"] == "ok"
    for step in ("import", "score", "cfa", "model:figure1", "model:top_down", "invariance:LANG"):
        assert log[step]["cached"], step
    assert json.loads(run.results_json.read_text())["bootstrap"]["bootstrap"]["R"] == 25


@pytest.mark.slow
def test_scalar_non_invariance_triggers_a_partial_search_used_by_group_comparisons(tmp_path):
    from instruments import load_instrument

    from _pipeline_study import make_study
    from analysis.study.demo import simulate_community_survey

    data = simulate_community_survey(500, seed=8, instrument=load_instrument("crs"))
    asian = data["ETHNIC"].isin([1, 3, 4])
    answer = data["TRUST2"].astype("Float64")
    valid = answer.between(1, 5)
    data.loc[asian & valid, "TRUST2"] = (answer[asian & valid] + 2).clip(upper=5).astype("Int64")  # a biased item
    path = make_study(tmp_path / "s", data=data, groups=("ETHNIC5",), min_group_size=50, replications=0)
    run = run_study(path, progress=False, report=False)
    r = json.loads(run.results_json.read_text())
    inv = r["invariance"]["ETHNIC5"]
    assert inv["highest"] == "metric"
    part = inv["partial"]
    assert part["step"] == "scalar" and part["holds"] and part["freed"][0] == "TRUST2~1"
    assert r["group_paths"]["ETHNIC5"]["freed"] == part["freed"]
