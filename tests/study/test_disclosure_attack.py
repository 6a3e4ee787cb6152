"""Disclosure control that survives subtraction (issue 12, item 1).

The attacker reads every number a study publishes (results.json, every
Parquet/CSV table under results/, the HTML and DOCX reports) and tries to
recover a count of fewer than k respondents: a category's size from a total
minus the other categories (one-way margins, ``ntotal``/``nobs`` of multi-group
fits, group means' n), and a suppressed crosstab or item-distribution cell from
its row and column margins (two-way), solving one unknown at a time until
nothing moves. A count recovered that way is all it then takes to get that
group's statistics (a total mean minus the other groups' means).

The scenario is the issue's: 1,200 respondents whose ETHNIC5 groups are
600/400/197/3, the 3 answering every TRUST item with 1, a study made by
``resilience init`` with ``groups: [ETHNIC5]``.
"""

from __future__ import annotations

import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import FIGURE1, MEASUREMENT, TOP_DOWN  # noqa: E402

K = 10
SMALL = ("Mixed or Multiple ethnic groups", "Other ethnic group")


# ---------------------------------------------------------------- the attacker

@dataclass
class Release:
    """What a bundle publishes, as the attacker sees it."""

    counts: dict[str, dict[str, int | None]] = field(default_factory=dict)   # variable -> category -> n (None: hidden)
    totals: set[int] = field(default_factory=set)                           # N of the whole sample or of a fit
    tables: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)  # two-way, NaN hidden, with a Total line
    item_stats: dict[str, dict] = field(default_factory=dict)  # item -> n_obs, mean, sd, dist (as analysed)
    reverse: dict[str, bool] = field(default_factory=dict)      # item -> reverse-keyed (its stats are recoded)

    def count(self, var: str, category: str, n) -> None:
        n = _number(n)
        known = self.counts.setdefault(var, {})
        if n is not None or category not in known:
            known[category] = n


def _number(value) -> int | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).replace(",", "").strip()
    return int(float(text)) if re.fullmatch(r"-?\d+(\.0+)?", text) else None


def read_bundle(results: Path) -> Release:
    """results.json and every table under results/."""
    rel = Release()
    r = json.loads((results / "results.json").read_text(encoding="utf-8"))
    sample = r.get("sample") or {}
    for key in ("n",):
        if _number(sample.get(key)) is not None:
            rel.totals.add(_number(sample[key]))
    for section in ("import", "validation", "scoring"):
        if _number((r.get(section) or {}).get("n_rows")) is not None:
            rel.totals.add(_number(r[section]["n_rows"]))
    for var, t in (sample.get("tables") or {}).items():
        for row in t["rows"]:
            if row["category"] == "Total":
                if _number(row["n"]) is not None:
                    rel.totals.add(_number(row["n"]))
            else:
                rel.count(var, row["category"], row["n"])
    for var, gm in (sample.get("group_means") or {}).items():
        for row in gm["rows"]:
            rel.count(var, row[0], row[1])
    for var, ct in (sample.get("crosstabs") or {}).items():
        frame = pd.DataFrame(ct["cells"], index=ct["index"], columns=ct["columns"]).map(_number)
        rel.tables.append((var, "crosstab", frame.astype(float)))

    def walk(node, path):
        if isinstance(node, dict):
            if _number(node.get("ntotal")) is not None:
                rel.totals.add(_number(node["ntotal"]))
            labels, nobs = node.get("group_labels"), node.get("nobs")
            if isinstance(labels, list) and isinstance(nobs, list) and labels and len(labels) == len(nobs):
                var = next((p for p in reversed(path) if p in rel.counts), path[-1] if path else "?")
                for lab, n in zip(labels, nobs):
                    rel.count(var, str(lab), n)
                rel.totals.add(sum(_number(n) or 0 for n in nobs))
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for v in node:
                walk(v, path)

    walk(r, ())
    for item in (r.get("reliability") or {}).get("items") or []:
        rel.item_stats[item["item"]] = item
    for p in sorted(results.rglob("*")):
        if p.suffix == ".parquet":
            frame = pd.read_parquet(p)
        elif p.suffix == ".csv":
            frame = pd.read_csv(p)
        else:
            continue
        if {"item", "code", "n"} <= set(frame.columns):  # item x answer counts, with pct revealing each total
            wide = frame.pivot_table(index="item", columns="code", values="n", aggfunc="first", dropna=False)
            n, pct = frame["n"].astype(float), frame.get("pct")
            total = (n * 100 / pct.astype(float)).where(pct.astype(float) > 0) if pct is not None else None
            wide["Total"] = total.groupby(frame["item"]).max().round() if total is not None else np.nan
            rel.tables.append((p.name, "items", wide.astype(float)))
            if "reverse" in frame.columns:
                rel.reverse.update(frame.groupby("item")["reverse"].first().astype(bool).to_dict())
        for col in ("n", "nobs", "ntotal"):
            if col in frame.columns and p.name != "item_distributions.parquet":
                rel.totals |= {int(v) for v in pd.to_numeric(frame[col], errors="coerce").dropna()}
    return rel


def read_report(html: str) -> Release:
    """Only what a reader of the HTML report sees: its tables and its text."""
    bs4 = pytest.importorskip("bs4")
    rel = Release()
    soup = bs4.BeautifulSoup(html, "html.parser")
    for t in soup.find_all("table"):
        rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"])] for tr in t.find_all("tr")]
        if len(rows) < 2:
            continue
        head, body = rows[0], rows[1:]
        cap = t.find_previous("p", class_="caption")
        name = cap.get_text(" ", strip=True) if cap else "?"
        if len(head) == 2 and head[1] == "n":  # a one-way table: category, n
            var = re.sub(r"^Table \d+\.\s*(Group:\s*)?", "", name)
            for cat, n in (r for r in body if len(r) == 2):
                if cat == "Total":
                    rel.totals.add(_number(n)) if _number(n) is not None else None
                else:
                    rel.count(var, cat, n)
        elif "Total" in head and any(r and r[0] == "Total" for r in body):  # two-way with margins
            frame = pd.DataFrame([r[1:] for r in body], index=[r[0] for r in body], columns=head[1:])
            rel.tables.append((name, "html", frame.map(lambda v: _number(v) if v != "[s]" else None).astype(float)))
        if len(head) > 1 and head[1] == "n":  # group means: group, n, ...
            for r in body:
                if r and r[0] != "Total" and len(r) > 1:
                    rel.count(name, r[0], r[1])
    text = " ".join(soup.get_text(" ").split())
    for m in re.finditer(r"(\d[\d,]*) respondents", text):
        rel.totals.add(_number(m.group(1)))
    for m in re.finditer(r"groups: ((?:[^()]+ \(n = [\d,]+\)(?:, )?)+)", text):
        for lab, n in re.findall(r"\s*([^()]+?) \(n = ([\d,]+)\)", m.group(1)):
            rel.count("groups", lab.strip(", "), n)
    return rel


def read_docx(path: Path) -> str:
    xml = zipfile.ZipFile(path).read("word/document.xml").decode("utf-8")
    return " ".join(re.sub(r"<[^>]+>", " ", xml).split())


def attack(rel: Release, k: int = K) -> list[str]:
    """Every count of fewer than k respondents the release gives away, by subtraction."""
    found = []
    counts = {var: dict(cats) for var, cats in rel.counts.items()}
    # two-way: one unknown in a line with a known total is the total minus the rest
    for name, kind, frame in rel.tables:
        f = frame.copy()
        hidden = f.isna()
        moved = True
        while moved:
            moved = False
            for axis in (0, 1):
                lines = f if axis == 0 else f.T
                for label, line in lines.iterrows():
                    cells = line.drop("Total", errors="ignore")
                    total = line.get("Total", np.nan)
                    if label == "Total" or np.isnan(total) or cells.isna().sum() != 1:
                        continue
                    col = cells.index[cells.isna()][0]
                    value = total - cells.sum()
                    if axis == 0:
                        f.loc[label, col] = value
                    else:
                        f.loc[col, label] = value
                    moved = True
        for r, c in zip(*np.where(hidden.to_numpy())):
            v = f.iat[r, c]
            if not np.isnan(v) and 0 < v < k:
                found.append(f"{name}: cell ({f.index[r]}, {f.columns[c]}) = {v:g} from its margins")
    # an item's answer counts hidden in one table: its own distribution elsewhere, or its mean and
    # SD beside the shown cells (each one more equation in the hidden counts)
    for name, kind, frame in rel.tables:
        if kind != "items":
            continue
        codes = [c for c in frame.columns if c != "Total"]
        for item, row in frame.iterrows():
            stats = rel.item_stats.get(item)
            hidden = [c for c in codes if np.isnan(row[c])]
            if not stats or not hidden:
                continue
            n = stats.get("n_obs") or row.get("Total")
            mirror = dict(zip(sorted(codes), sorted(codes, reverse=True))) if rel.reverse.get(item) else {}
            value = {c: float(mirror.get(c, c)) for c in codes}  # the code as analysed (reverse-keyed)
            solved = {}
            if stats.get("dist"):
                solved = {c: stats["dist"].get(str(int(value[c])), np.nan) * n for c in hidden}
            elif n and stats.get("mean") is not None:
                shown = [c for c in codes if c not in hidden]
                eqs = [(np.ones(len(hidden)), n - row[shown].sum()),
                       (np.array([value[c] for c in hidden]), n * stats["mean"] - sum(value[c] * row[c] for c in shown))]
                if stats.get("sd") is not None:
                    eqs.append((np.array([value[c] ** 2 for c in hidden]),
                                (n - 1) * stats["sd"] ** 2 + n * stats["mean"] ** 2 - sum(value[c] ** 2 * row[c] for c in shown)))
                a = np.array([e[0] for e in eqs])
                b = np.array([e[1] for e in eqs])
                if np.linalg.matrix_rank(a) == len(hidden):
                    solved = dict(zip(hidden, np.linalg.lstsq(a, b, rcond=None)[0]))
            for c, v in solved.items():
                if np.isfinite(v) and abs(v - round(v)) < 1e-6 and 0 < round(v) < k:
                    found.append(f"{name}: {item} answered {c:g} by {round(v)} (from its distribution or moments)")
    # one-way: a total minus the published categories is the hidden rest
    for var, cats in counts.items():
        shown = {c: n for c, n in cats.items() if n is not None}
        for c, n in shown.items():
            if 0 < n < k:
                found.append(f"{var}: {c} = {n} is published")
        for total in rel.totals:
            rest = total - sum(shown.values())
            if 0 < rest < k:
                found.append(f"{var}: {total} - {sum(shown.values())} = {rest} respondents outside "
                             f"{', '.join(shown)}")
    return found


# ---------------------------------------------------------------- the attacker works

def test_the_attacker_finds_the_issue_s_leak():
    """The release of the issue (before the fix): the one-way table hides Mixed and Other, but the
    group means print Mixed's n, and the multi-group fits print ntotal 1197."""
    rel = Release(totals={1200, 1197})
    for cat, n in (("White", 600), ("Asian", 400), ("Mixed", None), ("Other", None)):
        rel.count("ETHNIC5", cat, n)
    rel.count("ETHNIC5", "Mixed", 197)
    found = attack(rel)
    assert any("1200 - 1197 = 3" in f for f in found), found
    # with those 3 isolated, their TRUST mean follows from the overall mean and the group means
    groups = {"White": (600, 3.0), "Asian": (400, 2.8), "Mixed": (197, 2.9)}
    overall = (sum(n * m for n, m in groups.values()) + 3 * 1.0) / 1200
    rest = 1200 - sum(n for n, _ in groups.values())
    assert (overall * 1200 - sum(n * m for n, m in groups.values())) / rest == pytest.approx(1.0)


def test_the_attacker_solves_hidden_answer_counts_from_an_item_s_moments():
    counts = pd.Series({1.0: 3.0, 2.0: 9.0, 3.0: 40.0, 4.0: 30.0, 5.0: 18.0})
    n, values = counts.sum(), np.array(counts.index)
    mean = float((values * counts).sum() / n)
    sd = float(np.sqrt(((values - mean) ** 2 * counts).sum() / (n - 1)))
    row = counts.copy()
    row[[1.0, 2.0]] = np.nan  # primary and complementary suppression in one row
    frame = row.to_frame("TRUST1").T.assign(Total=n)
    leak = Release(tables=[("items", "items", frame)], item_stats={"TRUST1": {"n_obs": n, "mean": mean}})
    assert any("TRUST1 answered 1 by 3" in f for f in attack(leak)), attack(leak)
    dist = Release(tables=[("items", "items", frame)],
                   item_stats={"TRUST1": {"n_obs": n, "dist": {str(int(c)): v / n for c, v in counts.items()}}})
    assert any("TRUST1 answered 1 by 3" in f for f in attack(dist))
    row[[3.0]] = np.nan  # three hidden cells: the SD is the third equation
    three = Release(tables=[("items", "items", row.to_frame("TRUST1").T.assign(Total=n))],
                    item_stats={"TRUST1": {"n_obs": n, "mean": mean, "sd": sd}})
    assert any("TRUST1 answered 1 by 3" in f for f in attack(three))
    assert not attack(Release(tables=[("items", "items", frame)], item_stats={"TRUST1": {"n_obs": n}}))


def test_the_attacker_solves_a_crosstab_with_one_hidden_cell_per_line():
    frame = pd.DataFrame({"a": [np.nan, 20.0, 24.0], "b": [30.0, 40.0, 70.0], "Total": [34.0, 60.0, 94.0]},
                         index=["x", "y", "Total"])
    assert attack(Release(tables=[("t", "crosstab", frame)])) == ["t: cell (x, a) = 4 from its margins"]


# ---------------------------------------------------------------- the scenario of the issue

def _scenario(root: Path, *, small_models: bool, rule: str = "merge", replications: int = 0) -> Path:
    from instruments import load_instrument
    from instruments.export_data import write_kobo
    from ruamel.yaml import YAML

    from analysis.study.demo import simulate_community_survey
    from analysis.study.spec import init_study

    inst = load_instrument("crs")
    data = simulate_community_survey(1200, seed=3, instrument=inst)
    data["ETHNIC"] = pd.array([13] * 600 + [1] * 400 + [9] * 197 + [18] * 3, dtype="Int64")  # White, Asian, Mixed, Other
    trust = [it.id for it in inst.items_of("TRUST")]
    data.loc[data.index[-3:], trust] = 1
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    write_kobo(data, inst, root / "data" / "raw" / "survey_kobo.csv")
    path = init_study(root, data_name="survey_kobo.csv")
    yaml = YAML()
    doc = yaml.load(path.read_text(encoding="utf-8"))
    doc["groups"] = ["ETHNIC5"]
    doc["data"][0]["format"] = "kobo"
    doc["bootstrap"]["replications"] = replications
    doc["disclosure"]["small_groups"] = rule
    doc["report"]["formats"] = ["html", "docx"]
    if small_models:  # the same study with smaller models, so that it runs in seconds
        doc["models"] = [{"name": n, "syntax": s} for n, s in
                         (("measurement", MEASUREMENT), ("figure1", FIGURE1), ("top_down", TOP_DOWN))]
        for key in ("comparisons", "hypotheses"):
            doc.pop(key, None)
        doc["comparisons"] = [["figure1", "top_down"]]
    buf = io.StringIO()
    yaml.dump(doc, buf)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _run_and_attack(path: Path):
    from analysis.study.pipeline import run_study

    run = run_study(path, progress=False, report=True)
    bad = {s.name: s.message for s in run.steps if s.status != "ok"}
    assert not bad, bad
    html = Path(run.report["outputs"]["html"]).read_text(encoding="utf-8")
    assert attack(read_bundle(run.results_dir)) == []
    assert attack(read_report(html)) == []
    texts = {"results.json": run.results_json.read_text(encoding="utf-8"), "report.html": html}
    if "docx" in run.report.get("outputs", {}):
        texts["report.docx"] = read_docx(Path(run.report["outputs"]["docx"]))
    return run, texts


def _no_number_for_the_small_groups(texts: dict[str, str]) -> None:
    """The small groups are named at most in the note on the rule, never next to a number."""
    for where, text in texts.items():
        for name in SMALL:
            for m in re.finditer(re.escape(name), text):
                after = text[m.end():m.end() + 40]
                assert not re.match(r"""["',:\s|]*(\(n = )?\d""", after), (where, text[m.start():m.end() + 40])


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    return _run_and_attack(_scenario(tmp_path_factory.mktemp("merge") / "study", small_models=True))


def test_merge_leaves_nothing_to_subtract(merged):
    run, texts = merged
    r = run.results
    eth = {row["category"]: row["n"] for row in r["sample"]["tables"]["ETHNIC5"]["rows"]}
    assert eth == {"Asian, Asian British or Asian Welsh": "400", "Other (merged)": "200", "White": "600",
                   "Total": "1200"}
    assert r["disclosure"]["handled"]["ETHNIC5"] == sorted(SMALL)
    # the merged group is a group like the others in every model
    inv = r["invariance"]["ETHNIC5"]
    assert dict(zip(inv["group_labels"], inv["nobs"]))["Other (merged)"] == 200 and sum(inv["nobs"]) == 1200
    gm = {row[0]: row[1] for row in r["sample"]["group_means"]["ETHNIC5"]["rows"]}
    assert gm["Other (merged)"] == 200
    _no_number_for_the_small_groups(texts)
    # only the group under k is said to be small; the one merged with it to reach k is named as such
    assert r["disclosure"]["below_k"]["ETHNIC5"] == ["Other ethnic group"]
    assert ("Other ethnic group has fewer than 10 respondents, so it is analysed and reported together with Mixed "
            "or Multiple ethnic groups as Other (merged)") in " ".join(texts["report.html"].split()).replace(
        "<em>", "").replace("</em>", "")


def test_the_three_s_trust_answers_cannot_be_isolated(merged):
    """Every published TRUST figure describes at least k people: the residual's TRUST mean mixes
    the 3 with the 197, and nothing published lets anyone take the 197 out."""
    run, _ = merged
    gm = run.results["sample"]["group_means"]["ETHNIC5"]
    row = next(r for r in gm["rows"] if r[0] == "Other (merged)")
    trust = row[gm["columns"].index("TRUST")]
    assert row[1] == 200 and trust > 1.5  # 197 ordinary answers dominate; 1.000 is nowhere


def test_drop_leaves_them_out_of_every_total(tmp_path):
    run, texts = _run_and_attack(_scenario(tmp_path / "study", small_models=True, rule="drop"))
    r = run.results
    assert r["sample"]["n"] == 1197 == r["import"]["n_rows"] == r["validation"]["n_rows"]
    eth = {row["category"]: row["n"] for row in r["sample"]["tables"]["ETHNIC5"]["rows"]}
    assert eth["Total"] == "1197" and "Other (merged)" not in eth and eth["Mixed or Multiple ethnic groups"] == "197"
    assert r["cfa"]["fit"]["ntotal"] <= 1197


@pytest.mark.slow
def test_the_study_from_init_unchanged_leaks_nothing(tmp_path):
    """The issue's exact study (init's four models, FIML, invariance and key paths across ETHNIC5);
    bootstrap replications cut to 20 (they publish no counts). About 8 minutes on two loaded cores."""
    run, texts = _run_and_attack(_scenario(tmp_path / "study", small_models=False, replications=20))
    _no_number_for_the_small_groups(texts)


def test_a_rare_answer_hidden_in_the_distributions_is_not_given_back_by_item_statistics(tmp_path):
    """Four people answered CULT1 with 1: item_distributions hides that cell (and a complement);
    the reliability item analysis published the full distribution and the item's mean and SD
    beside it, which gave the cell back. Now an item with a hidden cell has no moments either."""
    from instruments import load_instrument

    from analysis.study.demo import simulate_community_survey
    from analysis.study.pipeline import run_study
    from _pipeline_study import make_study

    data = simulate_community_survey(300, seed=8, instrument=load_instrument("crs"))
    cult1 = pd.to_numeric(data["CULT1"], errors="coerce")
    data.loc[cult1 == 1, "CULT1"] = 2
    data.loc[data.index[:4], "CULT1"] = 1
    path = make_study(tmp_path / "s", data=data, replications=0, groups=(), comparisons=(),
                      models=[("measurement", MEASUREMENT)])
    run = run_study(path, progress=False, report=False)
    dist = pd.read_parquet(run.results_dir / "tables" / "item_distributions.parquet")
    assert dist[(dist["item"] == "CULT1") & (dist["code"] == 1)]["suppressed"].all()
    assert attack(read_bundle(run.results_dir)) == []
    cult1_stats = next(i for i in run.results["reliability"]["items"] if i["item"] == "CULT1")
    assert "dist" not in cult1_stats and cult1_stats["mean"] is None and cult1_stats["sd"] is None
    assert cult1_stats["alpha.drop"] is not None  # what describes no cell stays
