"""Shipped model files: resolvable by name, carry the Figure 1 arrows, and the := totals are right."""

from pathlib import Path

import numpy as np
import pytest

from analysis.cli.fit import resolve_model, shipped_models
from analysis.sem.partable import build_partable, latent_names, observed_names
from analysis.sem.syntax import parse_model

FIGURE1_PATHS = {
    ("TRUST", "CULT"), ("TRUST", "PART"), ("TRUST", "REPR"), ("CONF", "CULT"), ("CONF", "PART"),
    ("HOPE", "TRUST"), ("HOPE", "CONF"), ("AGENCY", "TRUST"), ("AGENCY", "CAPAB"),
    ("NEGOT", "TRUST"), ("NEGOT", "CONF"), ("NEGOT", "PSI"), ("NAVIG", "NEGOT"),
    ("NAVIG", "TRUST"), ("NAVIG", "AGENCY"), ("NAVIG", "HOPE"), ("RESIL", "NAVIG"),
    ("RESIL", "CAPAB"), ("RESIL", "AGENCY"),
}
CONSTRUCTS = ["CULT", "PART", "TRUST", "CONF", "HOPE", "AGENCY", "PSI", "NEGOT", "NAVIG",
              "CAPAB", "RESIL"]


def _paths(name: str) -> set[tuple[str, str]]:
    return {(s.lhs, s.rhs) for s in parse_model(resolve_model(name)[1]) if s.op == "~"}


def test_shipped_names():
    assert {"hs", "poldem", "measurement", "figure1", "partial_mediation", "top_down"} <= \
        set(shipped_models())
    assert resolve_model("hs")[1].count("=~") == 3


def test_model_file_path_resolves(tmp_path):
    f = tmp_path / "mine.lav"
    f.write_text("f =~ a + b + c\n")
    assert resolve_model(str(f)) == ("mine", "f =~ a + b + c\n")


def test_figure1_arrows():
    assert _paths("figure1") == FIGURE1_PATHS
    assert _paths("partial_mediation") == FIGURE1_PATHS | {("NAVIG", "CULT"), ("NAVIG", "PART")}
    top = _paths("top_down")
    assert not any("NEGOT" in p for p in top)
    assert {("NAVIG", "CULT"), ("NAVIG", "PART"), ("NAVIG", "TRUST"), ("NAVIG", "CONF")} <= top
    assert _paths("measurement") == set()


def test_item_ids_match_crs_instrument():
    from ruamel.yaml import YAML

    crs = YAML(typ="safe").load(Path("instruments/library/crs.yaml").read_text())
    ids: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "construct" in node and "id" in node:
                ids.add(node["id"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(crs)
    for name in ("measurement", "figure1", "partial_mediation", "top_down"):
        pt = build_partable(resolve_model(name)[1])
        assert sorted(latent_names(pt)) == sorted(CONSTRUCTS), name
        items = set(observed_names(pt)) - {"REPR"}
        assert items <= ids, (name, items - ids)
        assert len(items) == 41, name


def _total_effects(labels: dict[str, float], paths: dict[tuple[str, str], str]) -> dict:
    names = sorted({v for p in paths for v in p})
    idx = {v: i for i, v in enumerate(names)}
    B = np.zeros((len(names), len(names)))
    for (y, x), lab in paths.items():
        B[idx[y], idx[x]] = labels[lab]
    T = np.linalg.inv(np.eye(len(names)) - B) - np.eye(len(names))
    return {x: T[idx["RESIL"], idx[x]] for x in ("CULT", "PART")}


@pytest.mark.parametrize("name", ["figure1", "partial_mediation", "top_down"])
def test_defined_totals_equal_total_effects(name):
    # random path values: the := expressions must equal the (I - B)^-1 total effects
    st = parse_model(resolve_model(name)[1])
    paths = {(s.lhs, s.rhs): s.label[0] for s in st if s.op == "~"}
    rng = np.random.default_rng(7)
    labels = {lab: rng.uniform(-0.5, 0.8) for lab in paths.values()}
    defined = {s.lhs: s.rhs for s in st if s.op == ":="}
    totals = _total_effects(labels, paths)
    for x in ("CULT", "PART"):
        value = eval(defined[f"total_{x.lower()}_resil"], {}, dict(labels))  # noqa: S307
        assert value == pytest.approx(totals[x], rel=1e-12)


@pytest.fixture(scope="module")
def figure1_fits():
    from analysis.sem.fit import fit_sem
    from analysis.simulation.simulate import analysis_frame, simulate_responses
    from instruments.load import library_path, load_instrument

    inst = load_instrument(library_path("crs"))
    data = analysis_frame(simulate_responses("figure1", 600, seed=11, instrument=inst,
                                             missing_as="blank"), inst)
    return {m: fit_sem(resolve_model(m)[1], data)
            for m in ("measurement", "figure1", "partial_mediation", "top_down")}


def test_figure1_models_nesting(figure1_fits):
    from analysis.sem.compare import compare, net_nested

    f = figure1_fits
    # the measurement model nests every structural model; figure1 is nested in partial_mediation
    assert net_nested(f["measurement"], f["top_down"])[0] is True
    assert net_nested(f["partial_mediation"], f["figure1"])[0] is True
    # top_down has no negotiation paths: it does not nest the others
    assert net_nested(f["top_down"], f["partial_mediation"])[0] is False
    res = compare(f, warn=False)
    t = res.table
    assert list(t.index) == ["measurement", "top_down", "partial_mediation", "figure1"]
    assert t.loc["figure1", "nested"] is True and t.loc["figure1", "df.diff"] == 2
    assert t.loc["partial_mediation", "nested"] is False
    assert t.loc["top_down", "nested"] is True
    assert any("REPR is a fixed covariate" in w for w in res.warnings)
