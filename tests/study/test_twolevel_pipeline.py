"""The study pipeline with a cluster variable (issue 17, part 5): ICCs in results.json and a
two-level model's paths per level with one diagram per level; its bootstrap is refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from _pipeline_study import MEASUREMENT, make_study

TWOLEVEL = """level: 1
  TRUST =~ TRUST1 + TRUST2 + TRUST3
  NAVIG =~ NAVIG1 + NAVIG2 + NAVIG3
  NAVIG ~ TRUST
level: 2
  TRUSTb =~ TRUST1 + TRUST2 + TRUST3
  NAVIGb =~ NAVIG1 + NAVIG2 + NAVIG3
  NAVIGb ~ TRUSTb
"""


def _study(root):
    from instruments import load_instrument

    from analysis.study.demo import simulate_community_survey

    frame = simulate_community_survey(400, seed=11, instrument=load_instrument("crs"))
    items = ["TRUST1", "TRUST2", "TRUST3", "NAVIG1", "NAVIG2", "NAVIG3"]
    answers = frame[items].apply(pd.to_numeric, errors="coerce").where(lambda x: x > 0)
    # communities of 10 formed from the answers (plus noise): a clear between-community part
    key = answers.mean(axis=1).fillna(3) + np.random.default_rng(1).normal(scale=0.6, size=len(frame))
    community = np.empty(len(frame), dtype=object)
    community[np.argsort(key.to_numpy())] = np.repeat([f"area{k:02d}" for k in range(40)], 10)
    frame["community"] = community
    (root / "data").mkdir(parents=True)
    frame.to_csv(root / "data" / "survey.csv", index=False)
    path = make_study(root, data_file="data/survey.csv", groups=(), replications=2,
                      models=[("measurement", MEASUREMENT), ("twolevel", TWOLEVEL)], comparisons=())
    text = path.read_text().replace("    format: kobo\n", "    format: csv\n").replace(
        "  model: figure1\n", "  model: twolevel\n")
    path.write_text(text + "design:\n  cluster: community\n")
    return path


def test_cluster_study_reports_iccs_and_paths_per_level(tmp_path):
    from analysis.study.pipeline import run_study

    path = _study(tmp_path / "s")
    run_study(path, progress=False, report=False)
    res = json.loads((tmp_path / "s" / "results" / "results.json").read_text())
    steps = res["steps"]
    assert steps["icc"]["status"] == "ok" and steps["model:twolevel"]["status"] == "ok"
    icc = pd.DataFrame(res["icc"]["rows"])
    assert res["icc"]["cluster"] == "community" and res["icc"]["n_clusters"] == 40
    trust = icc[(icc["construct"] == "TRUST") & (icc["kind"] == "construct")]["icc"].iloc[0]
    assert 0.2 < trust < 0.9                        # the communities were formed from these answers
    est = pd.DataFrame(res["models"]["twolevel"]["estimates"])
    paths = est[est["op"] == "~"].set_index("level")
    assert paths.loc[1, "lhs"] == "NAVIG" and paths.loc[2, "lhs"] == "NAVIGb"
    assert "srmr_within" in res["models"]["twolevel"]["fit"]
    diagrams = res["figures"]["path_diagrams"]
    assert set(diagrams) == {"twolevel (level 1)", "twolevel (level 2)"}
    assert (tmp_path / "s" / "results" / diagrams["twolevel (level 2)"]["png"]).is_file()
    assert steps["bootstrap:twolevel"]["status"] == "failed"
    assert "resample whole clusters" in steps["bootstrap:twolevel"]["error"]["message"]
