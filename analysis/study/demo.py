"""The demo study: a simulated community survey in the shape of ``crs`` and a study folder that analyses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.study.records import StepFailure


def simulate_community_survey(n: int = 1200, *, seed: int = 20260401, missing: float = 0.05,
                              careless: float = 0.07, instrument=None) -> pd.DataFrame:
    """A simulated community survey in the shape of ``crs``: three ethnic groups, two interview languages.

    Population values are those of docs/figure1.md (``analysis/models/population/figure1.lav``);
    minority groups start with lower TRUST and one item is not invariant
    (a shifted intercept in one group); ``missing`` of the item answers are
    missing (as "Prefer not to say"/"Don't know" codes, clustered in a fifth of
    the respondents, as item nonresponse is) and
    ``careless`` of the respondents answer carelessly (straight-lining or at random).
    """
    from instruments import load_instrument

    from analysis.simulation.simulate import GroupSpec, simulate_responses

    inst = instrument if instrument is not None else load_instrument("crs")
    groups = [
        GroupSpec("White", 0.40, codes=[13, 14, 17]),
        GroupSpec("Asian", 0.35, means={"TRUST": -0.30}, intercepts={"CULT3": 0.35}, codes=[1, 3, 4]),
        GroupSpec("Black", 0.25, means={"TRUST": -0.40}, codes=[6, 7]),
    ]
    data, truth = simulate_responses("figure1", int(n), seed=seed, instrument=inst, groups=groups,
                                     missing=0.0, careless=careless, truth=True)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    # item nonresponse clusters in respondents: a fifth of them skip some items,
    # so that `missing` of all answers are "Prefer not to say" / "Don't know"
    items = [it for it in inst.items if it.role in ("item", "repr") and it.id in data]
    skippers = rng.random(len(data)) < 0.2
    hit = (rng.random((len(data), len(items))) < min(missing / 0.2, 0.9)) & skippers[:, None]
    for j, it in enumerate(items):
        codes = inst.scales[it.scale].missing_codes
        rows = hit[:, j] & data[it.id].notna().to_numpy()
        if codes and rows.any():
            col = data[it.id].astype(object)
            col[rows] = rng.choice(codes, size=int(rows.sum()))
            data[it.id] = pd.array(col.to_numpy(), dtype="Int64")
    # two interview languages: Urdu mostly among Asian respondents
    p_urdu = np.where(truth["group"].to_numpy() == "Asian", 0.60, 0.05)
    data["LANG"] = np.where(rng.random(len(data)) < p_urdu, 2, 1)
    data["GENDER"] = rng.choice([1, 2, 3], size=len(data), p=[0.50, 0.47, 0.03])
    # interview timings: about 15 minutes; careless respondents rush
    minutes = rng.lognormal(np.log(15), 0.3, len(data))
    minutes = np.where(truth["careless"].to_numpy(), minutes / 6, minutes)
    start = pd.Timestamp("2026-03-02 09:00") + pd.to_timedelta(rng.integers(0, 60 * 24 * 40, len(data)), unit="min")
    data["started_at"] = start
    data["ended_at"] = start + pd.to_timedelta(np.round(minutes * 60), unit="s")
    data["submitted_at"] = data["ended_at"]
    data["duration_s"] = np.round(minutes * 60)
    return data


DEMO_REPLICATIONS = {"fiml": 200, "listwise": 500}


def create_demo_study(out: str | Path, *, n: int = 1200, seed: int = 20260401, replications: int | None = None,
                      groups: tuple[str, ...] = ("ETHNIC5", "LANG"), data_format: str = "kobo",
                      missing: str = "fiml", design: bool = False) -> Path:
    """Write a simulated survey as a Kobo export plus a ``study.yaml`` that analyses it; returns the study file.

    The demo uses every answer (FIML, a real study's default). A FIML bootstrap
    refits each resample over all its missing-data patterns, so the demo draws
    200 replications (``DEMO_REPLICATIONS``; the report states R) to finish in a
    few minutes on two cores; ``missing="listwise"`` analyses complete cases only.
    ``design=True`` makes it a complex sample (:func:`_demo_design`): minorities
    oversampled, neighbourhoods as clusters within areas (strata), weights raked to
    census-style margins, declared in study.yaml's ``design:``.
    """
    from instruments import load_instrument

    from analysis.study.spec import init_study

    out = Path(out)
    inst = load_instrument("crs")
    data = simulate_community_survey(n, seed=seed, instrument=inst)
    raw = out / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    extra = None
    if design:
        extra, census = _demo_design(data, seed)
        census.to_csv(raw / "census_margins.csv", index=False)
    name = "community_survey_kobo.csv" if data_format == "kobo" else "community_survey.csv"
    try:
        from instruments.export_data import write_responses

        write_responses(data, inst, raw / name, format=data_format)
        fmt = data_format
        if extra is not None:   # design columns the instrument does not define, beside its answers
            _append_columns(raw / name, extra)
    except ImportError:  # fielding writers not installed: a plain CSV
        (data if extra is None else data.join(extra)).to_csv(raw / name, index=False)
        fmt = "csv"
    path = init_study(out, title="Demo: a simulated community survey", data_name=name, seed=seed, overwrite=True)
    text = path.read_text(encoding="utf-8")
    text = text.replace("    # format: kobo", f"    format: {fmt}")
    reps = int(replications) if replications is not None else DEMO_REPLICATIONS.get(missing, 500)
    text = text.replace("  replications: 500", f"  replications: {reps}" + (
        "    # the demo: fewer refits, to run in minutes; use 1000 or more to publish" if reps < 500 else ""))
    text = text.replace("groups: [ETHNIC5, LANG]", f"groups: [{', '.join(groups)}]")
    if missing != "fiml":
        text = text.replace("missing: fiml", f"missing: {missing}    # complete cases only")
    if design:
        text += ("\n# The sample design: minority groups oversampled, respondents recruited in neighbourhoods\n"
                 "# (clusters) within the areas (strata); the weights are raked to census-style margins\n"
                 "# (data/raw/census_margins.csv: resilience weights ... --targets census_margins.csv).\n"
                 "design:\n  weights: weight\n  cluster: NBHD\n  strata: AREA\n")
    path.write_text(text, encoding="utf-8")
    return path


# census-style margins of the demo's population: the minority groups are oversampled in the survey
DEMO_CENSUS = [("ETHGROUP", "White", 0.80), ("ETHGROUP", "Asian", 0.12), ("ETHGROUP", "Black", 0.08),
               ("GENDER", "1", 0.49), ("GENDER", "2", 0.49), ("GENDER", "3", 0.02)]


def _demo_design(data: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's design columns: ETHGROUP (the simulator's three groups), NBHD (8 neighbourhoods per
    area, the clusters) and ``weight`` raked to DEMO_CENSUS (analysis.design.calibrate)."""
    from analysis.design.calibrate import calibrate

    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    eth = pd.to_numeric(data["ETHNIC"], errors="coerce")
    group = np.select([eth.isin([13, 14, 17]), eth.isin([1, 3, 4]), eth.isin([6, 7])],
                      ["White", "Asian", "Black"], "Other")
    area = data["AREA"].astype(str).str.replace("Area ", "A", regex=False)
    extra = pd.DataFrame({"ETHGROUP": group, "NBHD": area + "-" + rng.integers(1, 9, size=len(data)).astype(str)},
                         index=data.index)
    census = pd.DataFrame(DEMO_CENSUS, columns=["variable", "category", "proportion"])
    frame = extra.assign(GENDER=pd.to_numeric(data["GENDER"], errors="coerce").astype("Int64").astype(str))
    extra["weight"] = np.round(calibrate(frame, census, method="rake").weights, 6)
    return extra, census


def _append_columns(path: Path, extra: pd.DataFrame) -> None:
    """Append columns to a delimited export in place, row for row (quoted fields kept as they are)."""
    import csv
    import io

    from instruments.ingest import sniff_delimiter

    text = path.read_text(encoding="utf-8-sig")
    delimiter = sniff_delimiter(text)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if len(rows) != len(extra) + 1:
        raise StepFailure("DemoDesign", f"{path}: {len(rows) - 1} rows for {len(extra)} respondents")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(rows[0] + list(extra.columns))
    for row, values in zip(rows[1:], extra.astype(str).itertuples(index=False)):
        writer.writerow(row + list(values))
    path.write_text(out.getvalue(), encoding="utf-8")
